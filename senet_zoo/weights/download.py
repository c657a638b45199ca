"""Verified downloads: ``senet-zoo download`` and ``create_model(name, pretrained=True)``.

The registry pins where validated weights live (``hub.repo_id``), which commit (``hub.revision``) and the
sha256 of their ``model.safetensors`` (``hub.sha256``). ``fetch_weights`` downloads ``config.json`` and
``model.safetensors`` of that commit through ``hf_hub_download`` (so the usual cache, ``HF_HOME``,
``HF_HUB_OFFLINE=1`` and ``HF_ENDPOINT`` apply) and checks the sha256 before anything is loaded. A cached
file that fails the check is refused offline, and re-fetched once online.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from .. import registry
from ..version import __version__
from ..errors import SenetZooError
from ..files import sha256_file
from ..hf_errors import one_line
from .folder import CONFIG_FILE, WEIGHTS_FILE, read_weights

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _not_published(ckpt: registry.Checkpoint) -> SenetZooError:
    return SenetZooError(None, (
        f"{ckpt.name}: no validated weights published on the Hub yet (checkpoints.yaml hub.repo_id is null); "
        f"convert the release locally: senet-zoo convert --model {ckpt.name} --caffemodel {ckpt.caffemodel} "
        f"--output out/{ckpt.name}, then create_model('{ckpt.name}', pretrained='out/{ckpt.name}')"))


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def _download(repo_id: str, filename: str, revision: str, endpoint: str | None, cache_dir: str | Path | None,
              force: bool = False) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
        RevisionNotFoundError)

    where = f"{repo_id}@{revision}"
    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, endpoint=endpoint, cache_dir=cache_dir,
                                     force_download=force, library_name="senet-zoo",
                                     library_version=__version__))
    except LocalEntryNotFoundError:
        if _offline():
            raise SenetZooError(where, f"{filename} is not in the Hub cache and offline mode is on "
                                "(HF_HUB_OFFLINE=1): download it once online (senet-zoo download)") from None
        raise SenetZooError(where, f"{filename}: the Hub cannot be reached and the file is not cached") from None
    except RepositoryNotFoundError as e:
        raise SenetZooError(where, f"repository not found or not accessible ({one_line(e)})") from None
    except RevisionNotFoundError as e:
        raise SenetZooError(where, f"revision not found ({one_line(e)})") from None
    except EntryNotFoundError as e:
        raise SenetZooError(where, f"{filename} is not in this revision ({one_line(e)})") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise SenetZooError(where, f"{filename}: download failed ({_reason(e)})") from None
    if not path.is_file():  # a damaged cache: the blob the snapshot points to is a folder (or not a file)
        raise SenetZooError(path, "the Hub cache holds something other than a file here: remove it from the "
                            "cache and download again")
    return path


def _reason(e: BaseException) -> str:
    """The client's message and the error it was raised from: a failed forced download says only "Force
    download failed due to the above error", and a one-line refusal has no "above"."""
    cause = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return one_line(e) if cause is None else f"{one_line(e)} {type(cause).__name__}: {one_line(cause)}"


def hub_file(repo_id: str, filename: str, revision: str | None = None, *, endpoint: str | None = None,
             cache_dir: str | Path | None = None) -> Path:
    """One file of a Hub model repository through the usual cache (``HF_HUB_OFFLINE=1`` works from it);
    every failure is one line naming ``repo_id@revision``. Nothing is verified: callers check what it is."""
    return _download(repo_id, filename, revision or "main", endpoint, cache_dir)


def _evict(path: Path) -> None:
    """Remove a cached file and the blob behind it (it failed verification)."""
    try:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob != path and blob.exists():
            blob.unlink()
    except OSError:
        pass


def fetch_weights(name: str, revision: str | None = None, *, repo_id: str | None = None,
                  sha256: str | None = None, endpoint: str | None = None, cache_dir: str | Path | None = None,
                  log: Callable[[str], None] = lambda s: None) -> Path:
    """The local folder (``model.safetensors`` + ``config.json``) of ``name``'s published weights, verified.

    Defaults come from the registry; ``repo_id``/``sha256``/``endpoint``/``cache_dir`` override it (tests,
    mirrors). A ``revision`` other than the pinned one is checked against the Hub's own LFS sha256 of the
    file only, and said so.
    """
    ckpt = registry.get(name)
    repo_id = repo_id or ckpt.hub_repo_id
    if not repo_id:
        raise _not_published(ckpt)
    on_pinned_repo = repo_id == ckpt.hub_repo_id
    revision = revision or (ckpt.hub_revision if on_pinned_repo else None)
    if not revision:
        raise SenetZooError(None, f"{name}: checkpoints.yaml gives {repo_id} without a revision; downloads are "
                            "pinned: pass --revision COMMIT_SHA")
    if sha256 is not None and not _SHA256.match(sha256):
        raise SenetZooError(None, f"{name}: expected sha256 {sha256!r} is not a sha256")

    config = _download(repo_id, CONFIG_FILE, revision, endpoint, cache_dir)
    # Both files from the same commit, even if `revision` is a branch that moves in between.
    commit = config.parent.name if re.fullmatch(r"[0-9a-f]{40}", config.parent.name) else revision
    # A branch or tag (`--revision main`) that resolves to the pinned commit is the pinned revision.
    pinned = on_pinned_repo and ckpt.hub_revision in (revision, commit)
    expected = sha256 or (ckpt.hub_sha256 if pinned else None)
    if expected is not None and not _SHA256.match(expected):
        raise SenetZooError(None, f"{name}: expected sha256 {expected!r} is not a sha256")
    weights = _download(repo_id, WEIGHTS_FILE, commit, endpoint, cache_dir)
    where = f"{repo_id}@{commit}"
    if expected is None:
        blob = weights.resolve().name  # the cache stores LFS files under their sha256
        if not _SHA256.match(blob):
            raise SenetZooError(weights, "cannot verify: not the pinned revision and the cache gives no sha256 "
                                "(pass the expected sha256)")
        expected = blob
        log(f"{where}: not the revision pinned in checkpoints.yaml; checked against the Hub's sha256 only")

    got = sha256_file(weights)
    if got != expected:
        if _offline():
            raise SenetZooError(weights, f"cached file is corrupted or substituted: sha256 {got[:12]}…, expected "
                                f"{expected[:12]}…; refusing it (offline mode is on: delete it and download "
                                "again online)")
        log(f"{weights}: sha256 {got[:12]}… is not the expected {expected[:12]}…; fetching it again")
        _evict(weights)
        weights = _download(repo_id, WEIGHTS_FILE, commit, endpoint, cache_dir, force=True)
        got = sha256_file(weights)
        if got != expected:
            raise SenetZooError(where, f"{WEIGHTS_FILE} on the Hub has sha256 {got[:12]}…, not the expected "
                                f"{expected[:12]}…: refusing it")

    # config.json has no pinned hash: it must at least belong to these weights (same model, architecture,
    # converter version and source hash as the verified safetensors metadata). A cached one that does not
    # (corrupted, truncated) is fetched once more online, as the weights are.
    try:
        read_weights(weights.parent, name, sha256=got)
    except SenetZooError as e:
        if _offline():
            raise SenetZooError(e.path, f"{e.message} (offline mode is on: delete it and download again "
                                "online)") from None
        log(f"{e.path}: {e.message}; fetching {CONFIG_FILE} again")
        _evict(config)
        _download(repo_id, CONFIG_FILE, commit, endpoint, cache_dir, force=True)
        read_weights(weights.parent, name, sha256=got)
    log(f"{where}: {WEIGHTS_FILE} sha256 {got} verified")
    return weights.parent
