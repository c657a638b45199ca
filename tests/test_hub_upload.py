"""Push and download through the real ``huggingface_hub`` client against a local Hub (tests/support/hub_server.py).

The push runs ``python -m senet_zoo push`` in a subprocess with ``HF_ENDPOINT``/``HF_TOKEN`` set, exactly as
a user would; downloads run in-process with the client's endpoint and cache pointed at the local Hub.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from senet_zoo import registry
from senet_zoo.errors import SenetZooError
from senet_zoo.files import sha256_file
from support.hub_fixtures import TOKEN, run_cli, shared_converted, write_record
from support.hub_server import FakeHub

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "my-org/se_resnet50"


@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as h:
        yield h


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    weights = shared_converted(tmp_path_factory)
    runs = tmp_path_factory.mktemp("runs")
    write_record(runs, weights, top1_err=22.40, top5_err=6.34)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HOME=str(tmp_path_factory.mktemp("hf-home")), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "senet_zoo", "push", "--model", "se_resnet50", "--weights", str(weights),
           "--repo-id", REPO_ID, "--records", str(runs), "--private"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    staged = tmp_path_factory.mktemp("staged") / "se_resnet50"
    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    # the same folder as the subprocess pushed: its links point to the Hub it was pushed to (HF_ENDPOINT)
    push("se_resnet50", weights, REPO_ID, find_records([runs]), dry_run=staged, log=lambda s: None,
         endpoint=hub.url)
    files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
    return SimpleNamespace(proc=proc, weights=weights, runs=runs, staged=staged, files=files,
                           sha=proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else None)


@pytest.fixture
def client(hub, tmp_path, monkeypatch):
    """In-process client settings as HF_ENDPOINT/HF_HUB_CACHE would give at import time."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return SimpleNamespace(cache=tmp_path / "hf-cache", constants=constants)


def test_push_makes_one_commit_through_the_real_client(pushed, hub):
    assert pushed.proc.returncode == 0, pushed.proc.stderr
    repo = hub.repos[REPO_ID]
    assert repo.private
    assert pushed.sha == repo.branches["main"] and len(repo.commits) == 2  # the Hub's initial commit + ours
    tree = repo.commits[pushed.sha]
    assert sorted(tree) == sorted([".gitattributes", *pushed.files])
    lfs = sorted(p for p, e in tree.items() if e.lfs_oid)
    assert lfs == ["model.safetensors", "validation/se_resnet50-224.npz"]
    assert tree["model.safetensors"].lfs_oid == sha256_file(pushed.weights / "model.safetensors")
    assert "SE-ResNet-50 from the Caffe release" in repo.messages[pushed.sha]
    routes = [(r["server"], r["method"], r["path"].split("?")[0]) for r in hub.requests]
    for expected in [("hub", "POST", "/api/repos/create"), ("hub", "POST", "/api/validate-yaml"),
                     ("hub", "POST", f"/api/models/{REPO_ID}/preupload/main"),
                     ("hub", "POST", f"/{REPO_ID}.git/info/lfs/objects/batch"),
                     ("hub", "POST", f"/{REPO_ID}.git/info/lfs/objects/verify"),
                     ("hub", "POST", f"/api/models/{REPO_ID}/commit/main")]:
        assert expected in routes, expected
    assert sum(1 for s, m, p in routes if s == "cdn" and m == "PUT") == 2
    assert not any("xet" in p for _, _, p in routes)
    out = pushed.proc.stdout
    assert "gate 224: REPRODUCED" in out and f"revision: {pushed.sha}" in out


def test_the_token_goes_to_the_hub_only_and_never_into_output(pushed, hub):
    assert TOKEN not in pushed.proc.stdout + pushed.proc.stderr
    for r in hub.requests:
        auth = r["headers"].get("authorization")
        if r["server"] == "cdn":
            assert auth is None, r["path"]     # LFS storage never sees the token
        elif r["method"] == "POST":
            assert auth == f"Bearer {TOKEN}", r["path"]
        assert TOKEN.encode() not in r["body"], r["path"]
    for f in pushed.files:
        assert TOKEN.encode() not in (pushed.staged / f).read_bytes()


def test_downloading_the_pushed_files_gives_the_staged_bytes(pushed, client):
    from huggingface_hub import hf_hub_download

    for f in pushed.files:
        got = hf_hub_download(REPO_ID, f, revision=pushed.sha, cache_dir=client.cache)
        assert Path(got).read_bytes() == (pushed.staged / f).read_bytes(), f


def test_fetch_weights_verifies_works_offline_and_refuses_a_corrupted_cache(pushed, hub, client, monkeypatch):
    from senet_zoo.weights.download import fetch_weights

    sha256 = sha256_file(pushed.weights / "model.safetensors")
    kw = dict(repo_id=REPO_ID, sha256=sha256, cache_dir=client.cache)
    folder = fetch_weights("se_resnet50", pushed.sha, **kw)
    assert folder.name == pushed.sha and sha256_file(folder / "model.safetensors") == sha256
    assert (folder / "config.json").read_bytes() == (pushed.weights / "config.json").read_bytes()

    # offline: served from the cache, no request at all
    monkeypatch.setattr(client.constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    assert fetch_weights("se_resnet50", pushed.sha, **kw) == folder
    assert len(hub.requests) == before

    # corrupted in the cache: refused offline ...
    blob = (folder / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(SenetZooError, match="cached file is corrupted or substituted"):
        fetch_weights("se_resnet50", pushed.sha, **kw)
    # ... and fetched again once online
    monkeypatch.setattr(client.constants, "HF_HUB_OFFLINE", False)
    lines = []
    assert fetch_weights("se_resnet50", pushed.sha, log=lines.append, **kw) == folder
    assert sha256_file(folder / "model.safetensors") == sha256 and "fetching it again" in lines[0]

    # substituted (the snapshot file replaced by other bytes): the same
    link = folder / "model.safetensors"
    link.unlink()
    link.write_bytes(bytes(data))
    monkeypatch.setattr(client.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SenetZooError, match="corrupted or substituted"):
        fetch_weights("se_resnet50", pushed.sha, **kw)
    monkeypatch.setattr(client.constants, "HF_HUB_OFFLINE", False)
    assert sha256_file(fetch_weights("se_resnet50", pushed.sha, **kw) / "model.safetensors") == sha256


def test_fetch_weights_refuses_what_the_hub_serves_if_it_is_not_the_pinned_file(pushed, hub, client, tmp_path):
    from senet_zoo.weights.download import fetch_weights

    with pytest.raises(SenetZooError, match="on the Hub has sha256 .* not the expected 000000000000"):
        fetch_weights("se_resnet50", pushed.sha, repo_id=REPO_ID, sha256="0" * 64, cache_dir=tmp_path / "c1")
    with pytest.raises(SenetZooError, match="holds 'se_resnet50', not 'se_resnet101'|holds weights of 'se_resnet50'"):
        fetch_weights("se_resnet101", pushed.sha, repo_id=REPO_ID, cache_dir=tmp_path / "c2")
    with pytest.raises(SenetZooError, match="revision not found"):
        fetch_weights("se_resnet50", "f" * 40, repo_id=REPO_ID, cache_dir=tmp_path / "c3")
    # not the registry's pin and no expected hash: checked against the Hub's LFS sha256, and said so
    lines = []
    fetch_weights("se_resnet50", pushed.sha, repo_id=REPO_ID, cache_dir=tmp_path / "c4", log=lines.append)
    assert "not the revision pinned in checkpoints.yaml" in lines[0] and "verified" in lines[-1]


def test_fetch_weights_offline_with_an_empty_cache_says_so(pushed, client, monkeypatch, tmp_path):
    from senet_zoo.weights.download import fetch_weights

    monkeypatch.setattr(client.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SenetZooError, match=r"not in the Hub cache and offline mode is on \(HF_HUB_OFFLINE=1\)"):
        fetch_weights("se_resnet50", pushed.sha, repo_id=REPO_ID, cache_dir=tmp_path / "empty")


def _pin(monkeypatch, **hub_fields):
    models = {n: registry.get(n) for n in registry.names()}
    models["se_resnet50"] = dataclasses.replace(models["se_resnet50"], **hub_fields)
    monkeypatch.setattr(registry, "_load", lambda: models)


def test_create_model_pretrained_and_download_use_the_registry_pin(pushed, client, monkeypatch, capfd):
    import torch

    import senet_zoo

    _pin(monkeypatch, hub_repo_id=REPO_ID, hub_revision=pushed.sha,
         hub_sha256=sha256_file(pushed.weights / "model.safetensors"))
    hub_model = senet_zoo.create_model("se_resnet50", pretrained=True)
    local = senet_zoo.create_model("se_resnet50", pretrained=pushed.weights)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(hub_model(x), local(x))
    rc, out, err = run_cli(["download", "se_resnet50"], capfd)
    assert rc == 0, err
    assert out.strip() == str(client.cache / "models--my-org--se_resnet50" / "snapshots" / pushed.sha)
    assert "verified" in err and TOKEN not in out + err


def test_timm_hf_hub_loads_the_pushed_repo_with_our_outputs(pushed, client):
    import timm
    import torch

    import senet_zoo

    theirs = timm.create_model(f"hf-hub:{REPO_ID}@{pushed.sha}", pretrained=True).eval()
    ours = senet_zoo.create_model("se_resnet50", pretrained=pushed.weights)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))


def test_download_of_an_unpublished_model_says_how_to_convert_it(capfd):
    rc, out, err = run_cli(["download", "senet154"], capfd)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no validated weights published on the Hub yet" in err
    assert "senet-zoo convert --model senet154 --caffemodel SENet-154.caffemodel" in err


def test_push_without_credentials_fails_in_one_line(hub, tmp_path_factory, tmp_path, client, monkeypatch, capfd):
    weights = shared_converted(tmp_path_factory)
    write_record(tmp_path / "runs", weights)
    monkeypatch.setenv("HF_TOKEN", "hf_wrongtoken456zyxwvutsrqponmlkjih")
    rc, out, err = run_cli(["push", "--model", "se_resnet50", "--weights", weights, "--repo-id", "my-org/other",
                            "--records", tmp_path / "runs"], capfd)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "upload failed" in err and "log in" in err and "wrongtoken" not in out + err


def test_pushing_the_same_folder_again_adds_no_commit(pushed, hub, client, capfd):
    head = hub.repos[REPO_ID].branches["main"]
    rc, out, err = run_cli(["push", "--model", "se_resnet50", "--weights", pushed.weights, "--repo-id", REPO_ID,
                            "--records", pushed.runs], capfd)
    assert rc == 0, err
    assert out.strip().splitlines()[-1] == head and hub.repos[REPO_ID].branches["main"] == head
    assert TOKEN not in out + err
