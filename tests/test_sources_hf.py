"""``validation/sources/hf.py``: ``hf://datasets/...`` read offline from a Hub cache folder built here by hand
(``datasets--OWNER--NAME/refs``, ``snapshots/COMMIT/``, ``blobs/`` named by sha256 or by git's blob id, which
``git hash-object`` computes here), and online from the local fake Hub (tests/support): which files, the pinned
URI, the notes, and every refusal's words."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources import hf
from senet_zoo.version import __version__

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
NO_SPLIT = ("no validation split: neither validation-*.parquet files (the Hub's parquet layout, e.g. "
            "data/validation-00000-of-00014.parquet) nor *validation-*.tar WebDataset shards (e.g. "
            "imagenet1k-validation-00.tar)")


def _git_blob_id(data: bytes, tmp_path: Path) -> str:
    """git's own blob id of ``data`` (the outside reference for the Hub's blobId)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: it is this test's outside reference for the blob id")
    f = tmp_path / "for-git"
    f.write_bytes(data)
    return subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()


# ------------------------------------------------------------------------------------------- pure functions

def test_uris_are_parsed_into_repo_and_revision():
    assert hf.is_hf_uri("hf://datasets/a/b") and hf.is_hf_uri("hf://models/x")
    assert not hf.is_hf_uri("data/hf://datasets/a/b") and not hf.is_hf_uri("/data/imagenet")
    assert hf.parse("hf://datasets/ILSVRC/imagenet-1k") == ("ILSVRC/imagenet-1k", "main")
    assert hf.parse("hf://datasets/timm/imagenet-1k-wds/") == ("timm/imagenet-1k-wds", "main")
    assert hf.parse("hf://datasets/a.b/c_d@refs/pr/3") == ("a.b/c_d", "refs/pr/3")
    assert hf.parse(f"hf://datasets/o/n@{COMMIT}") == ("o/n", COMMIT)
    for bad in ("hf://datasets/onlyowner", "hf://models/o/n", "hf://datasets/o/n/extra", "hf://datasets/o/n@",
                "xhf://datasets/o/n"):
        with pytest.raises(SenetZooError) as e:
            hf.parse(bad)
        assert str(e.value) == f"{bad}: expected hf://datasets/OWNER/NAME or hf://datasets/OWNER/NAME@REVISION"


def test_the_validation_split_is_found_by_its_paths():
    assert hf.split_files(["README.md", "data/validation-00001-of-00002.parquet", "data/train-0.parquet",
                           "data/validation-00000-of-00002.parquet", "imagenet1k-validation-00.tar"]) == (
        "parquet", ["data/validation-00000-of-00002.parquet", "data/validation-00001-of-00002.parquet"])
    assert hf.split_files(["validation-0.parquet", "a/b/validation-1.parquet"]) == (
        "parquet", ["a/b/validation-1.parquet", "validation-0.parquet"])
    assert hf.split_files(["imagenet1k-validation-01.tar", "imagenet1k-train-0000.tar", "validation-00.tar",
                           "imagenet1k-validation-00.tar", "x/validation.tar"]) == (
        "wds", ["imagenet1k-validation-00.tar", "imagenet1k-validation-01.tar", "validation-00.tar"])
    assert hf.split_files(["data/train-0.parquet", "test-validation.parquet", "README.md"]) is None
    assert hf.split_files([]) is None


def test_the_hubs_reported_hash_lfs_sha256_first_then_the_git_blob_id():
    sha, blob = "a" * 64, "b" * 40
    lfs = SimpleNamespace(sha256=sha)
    assert hf._reported(SimpleNamespace(lfs=lfs, blob_id=blob)) == ("sha256", sha)
    assert hf._reported(SimpleNamespace(lfs=None, blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(lfs=SimpleNamespace(sha256="A" * 64), blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(lfs=SimpleNamespace(sha256=sha + "0"), blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(lfs=SimpleNamespace(sha256=""), blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(lfs=SimpleNamespace(), blob_id=blob)) == ("git-sha1", blob)
    assert hf._reported(SimpleNamespace(lfs=None, blob_id="B" * 40)) is None
    assert hf._reported(SimpleNamespace(lfs=None, blob_id="b" * 41)) is None
    assert hf._reported(SimpleNamespace(lfs=None, blob_id=None)) is None
    assert hf._reported(object()) is None


def test_a_cached_files_hash_is_the_name_of_the_blob_it_links_to(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for name, want in (("c" * 64, ("sha256", "c" * 64)), ("d" * 40, ("git-sha1", "d" * 40)),
                       ("e" * 39, None), ("E" * 64, None), ("c" * 64 + ".incomplete", None)):
        (blobs / name).write_bytes(b"x")
        link = tmp_path / f"link-{name}"
        link.symlink_to(blobs / name)
        assert hf._cached(link) == want, name
    plain = tmp_path / ("f" * 64)
    plain.write_bytes(b"x")
    assert hf._cached(plain) is None


def test_digests_sha256_and_gits_blob_id(tmp_path):
    for data in (b"", b"hello\n", os.urandom(3 << 20)):
        f = tmp_path / "f"
        f.write_bytes(data)
        assert hf._digest(f, "sha256") == hashlib.sha256(data).hexdigest()
        assert hf._digest(f, "git-sha1") == _git_blob_id(data, tmp_path)
    f.write_bytes(b"hello\n")
    assert hf._digest(f, "git-sha1") == "ce013625030ba8dba906f756967f9e9ca394464a"   # git's, for "hello\n"
    for algorithm in ("sha256", "git-sha1"):
        with pytest.raises(SenetZooError) as e:
            hf._digest(tmp_path / "gone", algorithm)
        assert str(e.value) == f"{tmp_path / 'gone'}: cannot read it in the Hub cache (No such file or directory)"


def test_evict_removes_the_link_and_its_blob(tmp_path):
    blob = tmp_path / ("a" * 64)
    blob.write_bytes(b"bad")
    link = tmp_path / "file.parquet"
    link.symlink_to(blob)
    keep = tmp_path / "keep"
    keep.write_bytes(b"other")
    hf._evict(link)
    assert not link.exists() and not link.is_symlink() and not blob.exists() and keep.exists()
    plain = tmp_path / "plain.parquet"
    plain.write_bytes(b"bad")
    hf._evict(plain)
    assert not plain.exists()
    hf._evict(tmp_path / "never-there")           # nothing to remove: no error
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "missing-blob")
    hf._evict(dangling)
    assert not dangling.is_symlink()


# ------------------------------------------------------------------------------- offline: a hand-built cache

def _cache(tmp_path, monkeypatch, files: dict[str, bytes], repo="o/n", commit=COMMIT, refs=("main",),
           git_blob: tuple[str, ...] = ()) -> Path:
    """Lay out huggingface_hub's cache for a dataset: blobs named by sha256 (LFS) or by git blob id (the paths
    in ``git_blob``), snapshot links to them, refs naming the commit; offline mode on. The snapshot folder."""
    from huggingface_hub import constants

    root = tmp_path / "hub" / f"datasets--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        name = _git_blob_id(data, tmp_path) if path in git_blob else hashlib.sha256(data).hexdigest()
        (root / "blobs" / name).write_bytes(data)
        link = snap / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "blobs" / name, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (root / "refs" / ref).write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return snap


def test_offline_the_parquet_split_of_the_commit_refs_name_verified(tmp_path, monkeypatch):
    files = {"data/validation-00001-of-00002.parquet": b"PAR1 second", "data/train-00000.parquet": b"PAR1 t",
             "data/validation-00000-of-00002.parquet": b"PAR1 first", "imagenet1k-validation-00.tar": b"tar",
             "README.md": b"---\n---\n"}
    snap = _cache(tmp_path, monkeypatch, files, git_blob=("README.md",))
    for uri in ("hf://datasets/o/n", f"hf://datasets/o/n@{COMMIT}"):
        split = hf.fetch(uri)
        assert split.kind == "parquet" and split.uri == f"hf://datasets/o/n@{COMMIT}"
        assert split.files == [snap / "data/validation-00000-of-00002.parquet",
                               snap / "data/validation-00001-of-00002.parquet"]
        assert [p.read_bytes() for p in split.files] == [b"PAR1 first", b"PAR1 second"]
        assert split.notes == [f"2 file(s) of hf://datasets/o/n@{COMMIT} verified offline against the sha256 the "
                               "Hub reported when they were downloaded"]


def test_offline_webdataset_shards_with_git_blob_ids(tmp_path, monkeypatch):
    files = {"imagenet1k-validation-01.tar": b"shard one", "imagenet1k-validation-00.tar": b"shard zero",
             "imagenet1k-train-0000.tar": b"train"}
    snap = _cache(tmp_path, monkeypatch, files, git_blob=("imagenet1k-validation-00.tar",), refs=("v1",))
    split = hf.fetch("hf://datasets/o/n@v1")
    assert split.kind == "wds" and split.uri == f"hf://datasets/o/n@{COMMIT}"
    assert split.files == [snap / "imagenet1k-validation-00.tar", snap / "imagenet1k-validation-01.tar"]
    assert split.notes[-1].startswith(f"2 file(s) of hf://datasets/o/n@{COMMIT} verified offline")


def test_offline_a_file_not_matching_its_blobs_name_is_refused(tmp_path, monkeypatch):
    good = b"shard zero"
    snap = _cache(tmp_path, monkeypatch, {"imagenet1k-validation-00.tar": good, "imagenet1k-validation-01.tar": b"1"},
                  git_blob=("imagenet1k-validation-01.tar",))
    for name, algorithm in (("imagenet1k-validation-00.tar", "sha256"), ("imagenet1k-validation-01.tar", "git-sha1")):
        path = snap / name
        blob = path.resolve()
        original = blob.read_bytes()
        blob.write_bytes(b"substituted")
        got = (hashlib.sha256(b"substituted").hexdigest() if algorithm == "sha256"
               else _git_blob_id(b"substituted", tmp_path))
        with pytest.raises(SenetZooError) as e:
            hf.fetch("hf://datasets/o/n")
        assert str(e.value) == (f"{path}: the cached file has {algorithm} {got[:12]}…, not the {blob.name[:12]}… the "
                                "Hub reported for it (damaged or substituted); refusing it (offline mode is on: run "
                                "once online to fetch it again)")
        blob.write_bytes(original)
    assert hf.fetch("hf://datasets/o/n").kind == "wds"


def test_offline_a_plain_file_in_the_snapshot_cannot_be_verified(tmp_path, monkeypatch):
    snap = _cache(tmp_path, monkeypatch, {"validation-0.parquet": b"PAR1"})
    path = snap / "validation-0.parquet"
    path.unlink()
    path.write_bytes(b"PAR1")
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/n")
    assert str(e.value) == (f"{path}: cannot be verified offline: the Hub cache keeps it as a plain file, not a link "
                            "to a blob named by its hash; download it again online")


def test_offline_a_cache_without_the_split_or_the_repo(tmp_path, monkeypatch):
    _cache(tmp_path, monkeypatch, {"README.md": b"x", "data/train-0.parquet": b"PAR1"})
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/n")
    assert str(e.value) == f"hf://datasets/o/n@main: the Hub cache holds {NO_SPLIT}"
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/other")
    text = str(e.value)
    assert text.startswith("hf://datasets/o/other@main: not in the Hub cache, or not all of it, and offline mode is "
                           "on (HF_HUB_OFFLINE=1): run once online (") and "\n" not in text


# ------------------------------------------------------------------------------------- online: the fake Hub

def _parquet_bytes(tmp_path: Path, names: list[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"image": [{"bytes": n.encode(), "path": n} for n in names],
                             "label": pa.array([1] * len(names), pa.int64())}), path)
    return path.read_bytes()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from support.hub_client import serving_dataset

    files = {"data/validation-00001-of-00002.parquet": _parquet_bytes(tmp_path, ["b.JPEG"]),
             "data/validation-00000-of-00002.parquet": _parquet_bytes(tmp_path, ["a.JPEG"]),
             "data/train-00000-of-00001.parquet": _parquet_bytes(tmp_path, ["t.JPEG"]),
             "imagenet1k-validation-00.tar": b"\0" * 1024, "README.md": b"---\n---\n"}
    with serving_dataset(monkeypatch, tmp_path / "hf-cache", "o/n", files) as (server, sha):
        yield server, sha, files


def test_online_the_parquet_split_is_fetched_verified_and_pinned(hub, tmp_path, monkeypatch):
    server, sha, files = hub
    split = hf.fetch("hf://datasets/o/n")
    assert split.kind == "parquet" and split.uri == f"hf://datasets/o/n@{sha}"
    assert [p.relative_to(tmp_path / "hf-cache").as_posix() for p in split.files] == [
        f"datasets--o--n/snapshots/{sha}/data/validation-0000{i}-of-00002.parquet" for i in (0, 1)]
    assert [p.read_bytes() for p in split.files] == [files["data/validation-00000-of-00002.parquet"],
                                                     files["data/validation-00001-of-00002.parquet"]]
    assert split.notes == [f"2 file(s) of hf://datasets/o/n@{sha} verified against the sha256 the Hub reports"]
    fetched = sorted(r["path"].rsplit("/", 1)[-1] for r in server.requests if "/resolve/" in r["path"])
    assert fetched == ["validation-00000-of-00002.parquet", "validation-00001-of-00002.parquet"]
    agents = {r["headers"].get("user-agent", "") for r in server.requests if r["server"] != "cdn"}
    assert agents and all(f"senet-zoo/{__version__}" in a for a in agents), agents
    # offline afterwards: the refs/main the online run left name the same commit
    from huggingface_hub import constants

    assert (tmp_path / "hf-cache" / "datasets--o--n" / "refs" / "main").read_text() == sha
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hf.fetch("hf://datasets/o/n").files == split.files


def test_online_a_repo_without_the_split_and_one_with_shards_only(tmp_path, monkeypatch):
    from support.hub_client import serving_dataset

    with serving_dataset(monkeypatch, tmp_path / "c1", "o/none", {"data/train-0.parquet": b"PAR1"}, gated=False):
        with pytest.raises(SenetZooError) as e:
            hf.fetch("hf://datasets/o/none@main")
        assert str(e.value) == f"hf://datasets/o/none@main: holds {NO_SPLIT}"
    shards = {"imagenet1k-validation-01.tar": b"1" * 1024, "imagenet1k-validation-00.tar": b"0" * 1024,
              "imagenet1k-train-0000.tar": b"t" * 1024}
    with serving_dataset(monkeypatch, tmp_path / "c2", "o/wds", shards) as (server, sha):
        split = hf.fetch("hf://datasets/o/wds")
        assert split.kind == "wds" and [p.name for p in split.files] == ["imagenet1k-validation-00.tar",
                                                                         "imagenet1k-validation-01.tar"]
        assert [p.read_bytes() for p in split.files] == [b"0" * 1024, b"1" * 1024]
        assert not list((tmp_path / "c2").rglob("imagenet1k-train-0000.tar"))


def test_online_a_damaged_cached_copy_is_fetched_again_and_a_bad_hub_refused(hub, tmp_path):
    server, sha, files = hub
    split = hf.fetch("hf://datasets/o/n")
    first = split.files[0]
    good = files["data/validation-00000-of-00002.parquet"]
    oid = hashlib.sha256(good).hexdigest()
    first.resolve().write_bytes(b"damaged")
    before = len(server.requests)
    split = hf.fetch("hf://datasets/o/n")
    again = [r for r in server.requests[before:] if r["server"] != "cdn"]
    assert any(f"/resolve/{sha}/data/validation-00000-of-00002.parquet" in r["path"] for r in again)
    assert all(f"senet-zoo/{__version__}" in r["headers"].get("user-agent", "") for r in again)
    bad = hashlib.sha256(b"damaged").hexdigest()
    assert split.notes == [f"data/validation-00000-of-00002.parquet: the cached copy has sha256 {bad[:12]}…, the Hub "
                           f"reports {oid[:12]}…; fetched again",
                           f"2 file(s) of hf://datasets/o/n@{sha} verified against the sha256 the Hub reports"]
    assert split.files[0] == first and first.read_bytes() == good
    wrong = good[:100] + bytes(b ^ 0xFF for b in good[100:200]) + good[200:]   # the size the Hub reports
    server.replace_lfs_object(oid, wrong)
    first.resolve().write_bytes(b"damaged")
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/n")
    served = hashlib.sha256(wrong).hexdigest()
    assert str(e.value) == (f"hf://datasets/o/n@{sha}: data/validation-00000-of-00002.parquet: downloaded again, it "
                            f"still has sha256 {served[:12]}…, not the {oid[:12]}… the Hub reports: refusing it")


def test_online_a_file_the_hub_reports_no_hash_for_is_refused(hub, monkeypatch):
    import huggingface_hub

    server, sha, _ = hub
    real = huggingface_hub.HfApi.dataset_info

    def without_hashes(self, *args, **kwargs):
        info = real(self, *args, **kwargs)
        for s in info.siblings:
            s.lfs, s.blob_id = None, None
        return info

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", without_hashes)
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/n")
    assert str(e.value) == (f"hf://datasets/o/n@{sha}: data/validation-00000-of-00002.parquet: the Hub reports no "
                            "sha256 for it, so it cannot be verified")


def test_online_a_branch_that_moves_during_the_download_is_refused(hub, tmp_path, monkeypatch):
    import huggingface_hub

    server, sha, files = hub
    real = huggingface_hub.snapshot_download
    moved = {}

    def push_then_download(*args, **kwargs):
        moved["sha"] = server.add_dataset("o/n", {**files, "README.md": b"---\n# new\n---\n"})
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", push_then_download)
    with pytest.raises(SenetZooError) as e:
        hf.fetch("hf://datasets/o/n")
    assert str(e.value) == (f"hf://datasets/o/n@main: moved from commit {sha[:12]} to {moved['sha'][:12]} during the "
                            "download: run again, or pin the commit (hf://datasets/OWNER/NAME@COMMIT)")


def test_online_the_revision_asked_is_the_one_read(hub, tmp_path):
    server, old_sha, files = hub
    old = server.datasets["o/n"]
    newer = {"data/validation-00000-of-00001.parquet": _parquet_bytes(tmp_path, ["new.JPEG"])}
    new_sha = server.add_dataset("o/n", newer)
    server.datasets["o/n"].commits.update(old.commits)      # main moved on; the old commit is kept
    server.datasets["o/n"].branches["before"] = old_sha
    for uri in ("hf://datasets/o/n@before", f"hf://datasets/o/n@{old_sha}"):
        split = hf.fetch(uri)
        assert split.uri == f"hf://datasets/o/n@{old_sha}" and len(split.files) == 2, uri
        assert split.files[0].read_bytes() == files["data/validation-00000-of-00002.parquet"]
    split.files[0].resolve().write_bytes(b"damaged")               # fetched again: from the commit asked
    split = hf.fetch("hf://datasets/o/n@before")
    assert split.files[0].read_bytes() == files["data/validation-00000-of-00002.parquet"]
    assert "fetched again" in split.notes[0]
    split = hf.fetch("hf://datasets/o/n")
    assert split.uri == f"hf://datasets/o/n@{new_sha}" and [p.read_bytes() for p in split.files] == list(newer.values())
