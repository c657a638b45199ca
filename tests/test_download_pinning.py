"""``senet-zoo download`` edges against the local Hub: a branch that resolves to the pinned commit is the
pinned revision, the user agent carries our version, and a corrupted cached ``config.json`` is fetched
again online (refused offline), as a corrupted ``model.safetensors`` already is."""
from __future__ import annotations

import re
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
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{got / 'config.json'}: ")
    assert str(e.value).endswith(" (offline mode is on: delete it and download again online)")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    lines = []
    assert fetch_weights("se_resnet50", log=lines.append) == got
    assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert any("fetching config.json again" in line for line in lines), lines


@pytest.fixture
def two_commits(tmp_path, monkeypatch):
    """A local Hub repo whose ``notes.txt`` reads "one" at its first commit and "two" on main; the client's
    defaults (``constants.ENDPOINT``, ``HF_HUB_CACHE``) point at nothing, so a call that drops the endpoint or the
    cache folder it was given fails or looks in the wrong place."""
    import time

    from huggingface_hub import constants

    from support.hub_client import client_settings, upload

    with FakeHub(token=TOKEN) as hub:
        shas = []
        for text in ("one", "two"):
            folder = tmp_path / f"upload-{text}"
            folder.mkdir()
            (folder / "notes.txt").write_text(text)
            shas.append(upload(hub, "my-org/notes", folder))
        client_settings(monkeypatch, hub, tmp_path / "default-cache")
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(time, "sleep", lambda s: None)  # the client's five retries of a refused connection
        yield hub, shas


def test_hub_file_fetches_the_revision_from_the_endpoint_into_the_cache_it_is_given(two_commits, tmp_path):
    from senet_zoo.weights.download import hub_file

    hub, (first, second) = two_commits
    cache = tmp_path / "given-cache"
    old = hub_file("my-org/notes", "notes.txt", first, endpoint=hub.url, cache_dir=cache)
    assert old.read_text() == "one"
    assert old == cache / "models--my-org--notes" / "snapshots" / first / "notes.txt"
    new = hub_file("my-org/notes", "notes.txt", endpoint=hub.url, cache_dir=cache)  # no revision: main
    assert new.read_text() == "two" and new.parent.name == second
    assert not (tmp_path / "default-cache").exists()


def test_hub_file_failures_are_one_line_naming_the_repo_and_revision(two_commits, tmp_path):
    from senet_zoo.weights.download import hub_file

    hub, (first, _) = two_commits
    kw = dict(endpoint=hub.url, cache_dir=tmp_path / "c")
    # after the reason, the client's own first line (the local Hub's 404) in brackets
    cases = [
        (("my-org/absent", "notes.txt", None, kw),
         "my-org/absent@main: repository not found or not accessible (404 Client Error"),
        (("my-org/notes", "absent.txt", first, kw),
         f"my-org/notes@{first}: absent.txt is not in this revision (404 Client Error"),
        (("my-org/notes", "notes.txt", "f" * 40, kw), f"my-org/notes@{'f' * 40}: revision not found (404 Client Error"),
        (("my-org/notes", "notes.txt", first, dict(endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "c")),
         f"my-org/notes@{first}: notes.txt: the Hub cannot be reached and the file is not cached"),
    ]
    for (repo, filename, revision, options), expected in cases:
        with pytest.raises(SenetZooError) as e:
            hub_file(repo, filename, revision, **options)
        assert str(e.value).startswith(expected) and "\n" not in str(e.value), (expected, str(e.value))


def test_hub_file_offline_without_the_file_and_with_a_damaged_cache_says_what_to_do(two_commits, tmp_path,
                                                                                    monkeypatch):
    import shutil

    from huggingface_hub import constants

    from senet_zoo.weights.download import hub_file

    hub, (first, _) = two_commits
    kw = dict(endpoint=hub.url, cache_dir=tmp_path / "c")
    path = hub_file("my-org/notes", "notes.txt", first, **kw)
    # the blob the snapshot points to turned into a folder
    blob = path.resolve()
    blob.unlink()
    blob.mkdir()
    with pytest.raises(SenetZooError) as e:
        hub_file("my-org/notes", "notes.txt", first, **kw)
    assert str(e.value) == (f"{path}: the Hub cache holds something other than a file here: remove it from the "
                            "cache and download again")
    shutil.rmtree(tmp_path / "c")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SenetZooError) as e:
        hub_file("my-org/notes", "notes.txt", first, **kw)
    assert str(e.value) == (f"my-org/notes@{first}: notes.txt is not in the Hub cache and offline mode is on "
                            "(HF_HUB_OFFLINE=1): download it once online (senet-zoo download)")


def test_another_repository_without_a_revision_is_refused_not_given_the_pinned_commit(pinned):
    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    before = len(hub.requests)
    with pytest.raises(SenetZooError) as e:
        fetch_weights("se_resnet50", repo_id="my-org/mirror")
    assert str(e.value) == ("se_resnet50: checkpoints.yaml gives my-org/mirror without a revision; downloads are "
                            "pinned: pass --revision COMMIT_SHA")
    assert len(hub.requests) == before


def test_a_corrupted_cached_file_that_cannot_be_fetched_again_leaves_the_cache(pinned, monkeypatch):
    """The cached weights fail their sha256 and the Hub cannot be reached: refused, and neither the snapshot
    link nor the blob behind it stays in the cache to be found again."""
    import time

    from huggingface_hub import constants

    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    got = fetch_weights("se_resnet50")
    link = got / "model.safetensors"
    blob = link.resolve()
    assert blob != link
    blob.write_bytes(b"not the weights")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(time, "sleep", lambda s: None)  # the client's five retries of a refused connection
    # after the reason, the client's own (here: its forced download failed), never "None"
    with pytest.raises(SenetZooError, match=r"@[0-9a-f]{40}: model.safetensors: download failed \((?!None\)).+\)$") as e:
        fetch_weights("se_resnet50")
    # and the error the client's "failed due to the above error" points at: here the refused connection
    assert re.search(r"above error\.? \w+Error: .*[Cc]onnect", str(e.value)), str(e.value)
    assert not link.exists() and not link.is_symlink() and not blob.exists()
    # the same of a corrupted config.json (the weights fetched again first, from the Hub)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    got = fetch_weights("se_resnet50")
    config = got / "config.json"
    config_blob = config.resolve()
    config_blob.write_text("{}")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    with pytest.raises(SenetZooError, match=r"@[0-9a-f]{40}: config.json: download failed"):
        fetch_weights("se_resnet50")
    assert not config.exists() and not config.is_symlink() and not config_blob.exists()


def _dead_client_defaults(monkeypatch, cache):
    """The client's own defaults point at no Hub and at ``cache``; the fetch must use what it is given."""
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(time, "sleep", lambda s: None)  # the client's five retries of a refused connection


def test_every_fetch_and_refetch_uses_the_endpoint_and_cache_it_is_given(pinned, monkeypatch, tmp_path):
    """A first fetch, then a corrupted cached model.safetensors and a corrupted cached config.json, each
    fetched again: every request goes to ``endpoint`` and every file lands in ``cache_dir``; the log lines
    name the file, the two hashes (12 hex digits each) and the verified sha256 in full."""
    import hashlib

    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    _dead_client_defaults(monkeypatch, tmp_path / "default-cache")
    kw = dict(endpoint=hub.url, cache_dir=tmp_path / "given")
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    verified = f"{REPO_ID}@{sha}: model.safetensors sha256 {expected} verified"
    lines = []
    got = fetch_weights("se_resnet50", log=lines.append, **kw)
    assert got == tmp_path / "given" / "models--my-org--se_resnet50" / "snapshots" / sha
    assert lines == [verified]

    (got / "model.safetensors").resolve().write_bytes(b"not the weights")
    bad = hashlib.sha256(b"not the weights").hexdigest()
    lines = []
    assert fetch_weights("se_resnet50", log=lines.append, **kw) == got
    assert lines == [f"{got / 'model.safetensors'}: sha256 {bad[:12]}\u2026 is not the expected "
                     f"{expected[:12]}\u2026; fetching it again", verified]
    assert (got / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()

    (got / "config.json").resolve().write_text("{}")
    lines = []
    assert fetch_weights("se_resnet50", log=lines.append, **kw) == got
    assert len(lines) == 2 and lines[0].endswith("; fetching config.json again") and lines[1] == verified, lines
    assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert not (tmp_path / "default-cache").exists()


def test_corrupted_and_substituted_weights_are_refused_with_both_hashes(pinned, monkeypatch, tmp_path):
    """Offline, a corrupted cached file; online, a Hub that serves other bytes than the pinned sha256: each
    refused in one line naming both hashes (12 hex digits each)."""
    import hashlib

    from huggingface_hub import constants

    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    bad = hashlib.sha256(b"not the weights").hexdigest()
    got = fetch_weights("se_resnet50")
    (got / "model.safetensors").resolve().write_bytes(b"not the weights")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SenetZooError) as e:
        fetch_weights("se_resnet50")
    assert str(e.value) == (f"{got / 'model.safetensors'}: cached file is corrupted or substituted: sha256 "
                            f"{bad[:12]}\u2026, expected {expected[:12]}\u2026; refusing it (offline mode is on: "
                            "delete it and download again online)")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    other = "0123456789abcdef" * 4
    with pytest.raises(SenetZooError) as e:
        fetch_weights("se_resnet50", sha, sha256=other, cache_dir=tmp_path / "c2")
    assert str(e.value) == (f"{REPO_ID}@{sha}: model.safetensors on the Hub has sha256 {expected[:12]}\u2026, "
                            f"not the expected 0123456789ab\u2026: refusing it")


def test_an_expected_sha256_that_is_not_one_is_refused_before_it_is_compared(pinned, monkeypatch, tmp_path):
    import hashlib

    from senet_zoo.weights.download import fetch_weights

    hub, sha, folder = pinned
    before = len(hub.requests)
    with pytest.raises(SenetZooError) as e:
        fetch_weights("se_resnet50", sha256="ABC")
    assert str(e.value) == "se_resnet50: expected sha256 'ABC' is not a sha256"
    assert len(hub.requests) == before
    # the same of a registry whose pinned sha256 is upper case (the cache names blobs in lower case)
    doc = yaml.safe_load((REPO / "checkpoints.yaml").read_text())
    upper = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest().upper()
    doc["models"]["se_resnet50"]["hub"] = {"repo_id": REPO_ID, "revision": sha, "sha256": upper}
    registry = tmp_path / "checkpoints.yaml"
    registry.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SENET_ZOO_REGISTRY", str(registry))
    with pytest.raises(SenetZooError) as e:
        fetch_weights("se_resnet50")
    assert str(e.value) == f"se_resnet50: expected sha256 {upper!r} is not a sha256"


def test_both_files_come_from_one_commit_when_the_branch_moves_in_between(pinned, monkeypatch):
    """``--revision main`` while main moves to a commit with other weights right after config.json was
    fetched: model.safetensors still comes from the commit config.json came from (the pinned one)."""
    import huggingface_hub

    from senet_zoo.weights.download import fetch_weights
    from support.hub_client import upload

    hub, sha, folder = pinned
    real = huggingface_hub.hf_hub_download
    moved = []

    def download_then_move_main(repo_id, filename, **kw):
        path = real(repo_id, filename, **kw)
        if filename == "config.json" and not moved:
            newer = folder.parent / "newer"
            newer.mkdir(exist_ok=True)
            (newer / "model.safetensors").write_bytes(b"other weights")
            moved.append(upload(hub, REPO_ID, newer))
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download_then_move_main)
    try:
        lines = []
        got = fetch_weights("se_resnet50", "main", log=lines.append)
        assert moved and hub.repos[REPO_ID].branches["main"] == moved[0] != sha
        assert got.name == sha and len(lines) == 1 and lines[0].endswith(" verified"), lines  # not fetched twice
        assert (got / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
        # main has moved on: a corrupted config.json of the pinned commit is fetched again at that commit
        (got / "config.json").resolve().write_text("{}")
        assert fetch_weights("se_resnet50") == got
        assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    finally:
        hub.repos[REPO_ID].branches["main"] = sha


def test_the_pinned_sha256_applies_to_the_pinned_repository_and_commit_only(pinned, tmp_path, monkeypatch):
    """Other weights (seed 1) at a newer commit of the pinned repository, and at a commit of a mirror that
    a registry pins for the pinned repository: each is checked against the Hub's own sha256 of the file, not
    against the registry's sha256 of the pinned weights."""
    import hashlib

    from senet_zoo.weights.download import fetch_weights
    from support.hub_client import upload
    from support.hub_fixtures import converted_folder

    hub, sha, folder = pinned
    other = converted_folder(tmp_path / "other" / "se_resnet50", seed=1)
    other_sha256 = hashlib.sha256((other / "model.safetensors").read_bytes()).hexdigest()
    newer = upload(hub, REPO_ID, other)
    try:
        lines = []
        got = fetch_weights("se_resnet50", newer, log=lines.append)
        assert got.name == newer and lines == [
            f"{REPO_ID}@{newer}: not the revision pinned in checkpoints.yaml; checked against the Hub's sha256 only",
            f"{REPO_ID}@{newer}: model.safetensors sha256 {other_sha256} verified"]
        # the cached file is not a link to a blob named by its sha256 (replaced by a copy): nothing to check
        # it against, and said so
        link = got / "model.safetensors"
        data = link.read_bytes()
        link.unlink()
        link.write_bytes(data)
        with pytest.raises(SenetZooError) as e:
            fetch_weights("se_resnet50", newer)
        assert str(e.value) == (f"{link}: cannot verify: not the pinned revision and the cache gives no sha256 "
                                "(pass the expected sha256)")
    finally:
        hub.repos[REPO_ID].branches["main"] = sha
    mirrored = upload(hub, "my-org/mirror", other)
    doc = yaml.safe_load((REPO / "checkpoints.yaml").read_text())
    doc["models"]["se_resnet50"]["hub"] = {"repo_id": REPO_ID, "revision": mirrored,
                                           "sha256": hashlib.sha256((folder / "model.safetensors").read_bytes())
                                           .hexdigest()}
    registry = tmp_path / "checkpoints.yaml"
    registry.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SENET_ZOO_REGISTRY", str(registry))
    got = fetch_weights("se_resnet50", mirrored, repo_id="my-org/mirror")
    assert (got / "model.safetensors").read_bytes() == (other / "model.safetensors").read_bytes()
