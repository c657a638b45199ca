"""``senet-zoo download`` edges against the local Hub: a branch that resolves to the pinned commit is the
pinned revision, the user agent carries our version, and a corrupted cached ``config.json`` is fetched
again online (refused offline), as a corrupted ``model.safetensors`` already is."""
from __future__ import annotations

import shutil

import pytest
import yaml

from senet_zoo.errors import SenetZooError
from senet_zoo.files import sha256_file
from support.hub_client import client_settings, upload
from support.hub_fixtures import TOKEN, shared_converted
from support.hub_server import FakeHub

from conftest import REPO

REPO_ID = "my-org/se_resnet50"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    weights = shared_converted(tmp_path_factory)
    folder = tmp_path_factory.mktemp("repo") / "se_resnet50"
    folder.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(weights / f, folder / f)
    with FakeHub(token=TOKEN) as hub:
        sha = upload(hub, REPO_ID, folder)
        doc = yaml.safe_load((REPO / "checkpoints.yaml").read_text())
        doc["models"]["se_resnet50"]["hub"] = {"repo_id": REPO_ID, "revision": sha,
                                               "sha256": sha256_file(folder / "model.safetensors")}
        registry = tmp_path_factory.mktemp("registry") / "checkpoints.yaml"
        registry.write_text(yaml.safe_dump(doc))
        yield hub, sha, registry, folder


@pytest.fixture
def pinned(published, monkeypatch, tmp_path):
    hub, sha, registry, folder = published
    client_settings(monkeypatch, hub, tmp_path / "hf-cache")
    monkeypatch.setenv("SENET_ZOO_REGISTRY", str(registry))
    return hub, sha, folder


def test_a_branch_at_the_pinned_commit_is_the_pinned_revision(pinned):
    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    before = len(hub.requests)
    lines = []
    got = fetch_weights("se_resnet50", "main", log=lines.append)
    assert got.name == sha
    assert not any("not the revision pinned" in line for line in lines), lines
    assert any("verified" in line for line in lines)
    agents = {r["headers"].get("user-agent", "") for r in hub.requests[before:]}
    assert agents and all("senet-zoo/0.1.0" in a for a in agents), agents


def test_a_corrupted_cached_config_is_fetched_again_online_and_refused_offline(pinned, monkeypatch):
    from huggingface_hub import constants

    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    got = fetch_weights("se_resnet50")
    blob = (got / "config.json").resolve()
    blob.write_text('{"architecture": "legacy_seresnet50", "truncated')
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SenetZooError, match="offline mode is on") as e:
        fetch_weights("se_resnet50")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    lines = []
    assert fetch_weights("se_resnet50", log=lines.append) == got
    assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert any("fetching config.json again" in line for line in lines), lines
