"""``--data hf://datasets/OWNER/NAME[@REVISION]``: the validation split of a Hub dataset repo, fetched into
huggingface_hub's cache and verified there before a byte of it is read.

Which files, by one rule on the repo's paths (online and offline alike): the Hub's parquet layout,
``validation-*.parquet`` at any depth (``ILSVRC/imagenet-1k``: ``data/validation-00000-of-00014.parquet`` ...),
read by ``parquet``; else WebDataset validation shards, ``*validation-*.tar`` (``timm/imagenet-1k-wds``:
``imagenet1k-validation-00.tar`` ... ``-63.tar`` at the repo root), read by ``wds``. Only those files are
fetched (``snapshot_download`` with ``allow_patterns``), into the usual cache (``HF_HOME``, ``HF_HUB_CACHE``,
``HF_TOKEN``, ``HF_ENDPOINT`` apply).

Verified: every file is hashed in the cache before it is read. Online, against what the Hub reports for the
commit REVISION (default ``main``) resolves to: ``lfs.sha256`` (the git blob id of a file kept out of LFS); a
file that does not match, damaged or swapped, is fetched once more, then refused. Offline (``HF_HUB_OFFLINE=1``)
REVISION is resolved by the cache's ``refs/`` and the files are those of ``snapshots/COMMIT/``, as
huggingface_hub itself does offline; each is checked against the hash its blob is named by, which is what the
Hub reported when it was downloaded, and refused if it does not match. The record's ``source_uri`` names the
commit: ``hf://datasets/OWNER/NAME@COMMIT``.

ImageNet's repos are gated: without a token that has accepted the dataset's terms the Hub answers 401, said here
in one line (the token itself is never printed).
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import SenetZooError
from ...files import sha256_file
from ...hf_errors import one_line
from ...version import __version__

PREFIX = "hf://datasets/"
# the validation split in each form the Hub holds ImageNet, in order of preference (allow_patterns: fnmatch on
# the path in the repo, where * also matches /)
SPLITS = {"parquet": ["validation-*.parquet", "*/validation-*.parquet"], "wds": ["*validation-*.tar"]}
_URI = re.compile(r"hf://datasets/([\w.-]+/[\w.-]+)(?:@([\w./-]+))?/?")
_SHA256, _GIT_SHA1 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")


@dataclass
class HubSplit:
    """The verified local files of a dataset's validation split."""
    kind: str                        # parquet | wds: which reader
    files: list[Path]                # in the cache (snapshots/COMMIT/...), sorted by their path in the repo
    uri: str                         # hf://datasets/OWNER/NAME@COMMIT
    notes: list[str] = field(default_factory=list)


def is_hf_uri(data: str) -> bool:
    return str(data).startswith("hf://")


def parse(uri: str) -> tuple[str, str]:
    m = _URI.fullmatch(uri)
    if m is None:
        raise SenetZooError(uri, "expected hf://datasets/OWNER/NAME or hf://datasets/OWNER/NAME@REVISION")
    return m.group(1), m.group(2) or "main"


def split_files(paths: list[str]) -> tuple[str, list[str]] | None:
    """(which form, its files) of the validation split among a repo's ``paths``, or None."""
    for kind, patterns in SPLITS.items():
        files = sorted(p for p in paths if any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns))
        if files:
            return kind, files
    return None


def fetch(uri: str) -> HubSplit:
    """The validation split of ``uri``, downloaded (or, offline, found in the cache) and verified."""
    from huggingface_hub import constants

    repo_id, revision = parse(uri)
    where = f"{PREFIX}{repo_id}@{revision}"
    offline = bool(constants.is_offline_mode())
    with _one_line(where, offline):
        return _from_cache(repo_id, revision, where) if offline else _from_hub(repo_id, revision, where)


def _no_split(where: str, in_cache: bool = False) -> SenetZooError:
    return SenetZooError(where, f"{'the Hub cache holds' if in_cache else 'holds'} no validation split: neither "
                         "validation-*.parquet files (the Hub's parquet layout, e.g. data/validation-00000-of-00014"
                         ".parquet) nor *validation-*.tar WebDataset shards (e.g. imagenet1k-validation-00.tar)")


def _from_hub(repo_id: str, revision: str, where: str) -> HubSplit:
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    info = HfApi(library_name="senet-zoo", library_version=__version__).dataset_info(
        repo_id, revision=revision, files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings or []}
    found = split_files(list(siblings))
    if found is None:
        raise _no_split(where)
    kind, names = found
    commit = info.sha
    # by REVISION, not the commit, so that huggingface_hub records refs/REVISION for offline runs
    snapshot = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=SPLITS[kind],
                                      library_name="senet-zoo", library_version=__version__))
    if snapshot.name != commit:
        raise SenetZooError(where, f"moved from commit {commit[:12]} to {snapshot.name[:12]} during the download: "
                            "run again, or pin the commit (hf://datasets/OWNER/NAME@COMMIT)")
    pinned = f"{PREFIX}{repo_id}@{commit}"
    split = HubSplit(kind, [], pinned)
    for name in names:
        expected = _reported(siblings[name])
        if expected is None:
            raise SenetZooError(pinned, f"{name}: the Hub reports no sha256 for it, so it cannot be verified")
        path = snapshot / name
        got = _digest(path, expected[0])
        if got != expected[1]:
            split.notes.append(f"{name}: the cached copy has {expected[0]} {got[:12]}…, the Hub reports "
                               f"{expected[1][:12]}…; fetched again")
            _evict(path)
            path = Path(hf_hub_download(repo_id, name, repo_type="dataset", revision=commit, force_download=True,
                                        library_name="senet-zoo", library_version=__version__))
            got = _digest(path, expected[0])
            if got != expected[1]:
                raise SenetZooError(pinned, f"{name}: downloaded again, it still has {expected[0]} {got[:12]}…, "
                                    f"not the {expected[1][:12]}… the Hub reports: refusing it")
        split.files.append(path)
    split.notes.append(f"{len(names)} file(s) of {pinned} verified against the sha256 the Hub reports")
    return split


def _from_cache(repo_id: str, revision: str, where: str) -> HubSplit:
    from huggingface_hub import snapshot_download

    for kind, patterns in SPLITS.items():
        # offline, huggingface_hub resolves REVISION through refs/ and gives snapshots/COMMIT (and, where it
        # kept the repo's file list, refuses a snapshot that misses files of the pattern)
        snapshot = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, allow_patterns=patterns,
                                          library_name="senet-zoo", library_version=__version__))
        paths = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file() or p.is_symlink()]
        found = split_files(paths)
        if found is not None and found[0] == kind:
            break
    else:
        raise _no_split(where, in_cache=True)
    pinned = f"{PREFIX}{repo_id}@{snapshot.name}"
    split = HubSplit(kind, [], pinned)
    for name in found[1]:
        path = snapshot / name
        expected = _cached(path)
        if expected is None:
            raise SenetZooError(path, "cannot be verified offline: the Hub cache keeps it as a plain file, not a "
                                "link to a blob named by its hash; download it again online")
        got = _digest(path, expected[0])
        if got != expected[1]:
            raise SenetZooError(path, f"the cached file has {expected[0]} {got[:12]}…, not the {expected[1][:12]}… "
                                "the Hub reported for it (damaged or substituted); refusing it (offline mode is on: "
                                "run once online to fetch it again)")
        split.files.append(path)
    split.notes.append(f"{len(split.files)} file(s) of {pinned} verified offline against the sha256 the Hub "
                       "reported when they were downloaded")
    return split


def _reported(sibling) -> tuple[str, str] | None:
    """(algorithm, digest) the Hub reports for a file: LFS files by sha256, others by git blob id."""
    lfs = getattr(sibling, "lfs", None)
    sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
    if sha256 and _SHA256.fullmatch(sha256):
        return "sha256", sha256
    blob_id = getattr(sibling, "blob_id", None)
    if blob_id and _GIT_SHA1.fullmatch(blob_id):
        return "git-sha1", blob_id
    return None


def _cached(path: Path) -> tuple[str, str] | None:
    """(algorithm, digest) a cached file's blob is named by: huggingface_hub names LFS blobs by their sha256 and
    other blobs by their git blob id, as the Hub reported them at download."""
    if not path.is_symlink():
        return None
    blob = Path(os.path.realpath(path)).name
    if _SHA256.fullmatch(blob):
        return "sha256", blob
    if _GIT_SHA1.fullmatch(blob):
        return "git-sha1", blob
    return None


def _digest(path: Path, algorithm: str) -> str:
    try:
        if algorithm == "sha256":
            return sha256_file(path)
        h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)   # git's blob id: the header, then the content
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()
    except OSError as e:
        raise SenetZooError(path, f"cannot read it in the Hub cache ({e.strerror or e})") from None


def _evict(path: Path) -> None:
    """Remove a cached file and the blob behind it (it failed verification), so it is fetched anew."""
    try:
        blob = Path(os.path.realpath(path))
        path.unlink(missing_ok=True)
        if blob != path:
            blob.unlink(missing_ok=True)
    except OSError:
        pass


@contextlib.contextmanager
def _one_line(where: str, offline: bool):
    """huggingface_hub's errors as one line naming the dataset (never the token)."""
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
        RevisionNotFoundError)

    try:
        yield
    except SenetZooError:
        raise
    except GatedRepoError:
        raise SenetZooError(where, "the dataset is gated: a Hugging Face token that has accepted its terms is "
                            "needed (hf auth login, or set HF_TOKEN)") from None
    except RepositoryNotFoundError as e:
        raise SenetZooError(where, f"dataset not found or not accessible ({one_line(e)}); gated datasets need a "
                            "token (hf auth login, or set HF_TOKEN)") from None
    except RevisionNotFoundError as e:
        raise SenetZooError(where, f"revision not found ({one_line(e)})") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
        if offline:
            raise SenetZooError(where, "not in the Hub cache, or not all of it, and offline mode is on "
                                f"(HF_HUB_OFFLINE=1): run once online ({one_line(e)})") from None
        raise SenetZooError(where, f"the Hub cannot be reached ({one_line(e)})") from None
    except HfHubHTTPError as e:
        if getattr(getattr(e, "response", None), "status_code", None) == 401:
            raise SenetZooError(where, "the Hub refused the request (401): a Hugging Face token that has accepted "
                                "the dataset's terms is needed (hf auth login, or set HF_TOKEN)") from None
        raise SenetZooError(where, f"download failed ({one_line(e)})") from None
    except Exception as e:  # connection errors of the HTTP client, whatever its version calls them
        raise SenetZooError(where, f"download failed ({one_line(e)})") from None
