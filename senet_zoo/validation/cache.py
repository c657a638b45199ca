"""Decode once (``validate --cache DIR``): the preprocessed uint8 crops of an evaluation set, memory-mapped.

Decoding + resizing is the CPU cost of an evaluation (about 1.4 ms per ImageNet JPEG per core); the seven
models at 224 all see the same crops, so the first run stores them and later runs only copy them.

::

    DIR/<preprocess>-<resize>-<crop>/   one per preprocessing: the models at 224 share one, SENet-154 at 320 its own
        <key>-<8 hex>/                  the crops of one key: key.json, images.npy, status.npy, lock
        <key>.current                   which of them later runs with this key open (replaced atomically)
        .lock                           held while a pointer is read or switched or a folder taken away

``key.json`` is what the crops depend on: the reader's ``identity()`` (name, size, mtime_ns of every image) and
kind, the preprocessing (name, resize, crop) and the decoder's version (OpenCV, or Pillow for ``pil``);
``<key>`` is 16 hex digits of its sha256. ``images.npy``: (N, crop, crop, 3) uint8 RGB; ``status.npy``: (N,) int8
per image, -1 not stored yet, 0 bad image (the decoder refused it), 1 stored.

What keeps a shared ``DIR`` right (issue 14):

* **A run writes only into a folder of its own key.** Other images (even as many) get a folder of their
  own, so two runs sharing ``DIR`` never write into each other's rows.
* **A folder is never rebuilt under a live run.** A damaged or stale folder is replaced by a new one and the
  pointer switched atomically; a run keeps the arrays it mapped when it opened its folder (DataLoader workers
  inherit the mappings), and holds a shared ``flock`` on the folder's ``lock`` while it runs. A folder is
  only taken away by whoever gets that lock exclusively, i.e. when no run uses it: opening a preprocessing's
  folder removes every folder nobody holds but the current one of this key, so between runs one copy per
  preprocessing stays on disk.
* **No half-written folder, no SIGBUS.** ``images.npy`` is allocated in full when its folder is made
  (``posix_fallocate``), in a temporary folder renamed into place once complete, so a full disk (or a file
  size limit) is an error then (one note; the run carries on without the cache) instead of a SIGBUS in a
  worker's later write into a sparse file.
* **Read-only where nothing is left to write.** A folder with no row at -1 is mapped read-only (it works on a
  read-only filesystem); a folder that cannot be written is read for its stored rows and the others are
  decoded without being stored; a ``DIR`` where no folder can be made is not used (one note).

Rows are written by whichever DataLoader worker decodes them (image first, then its status); batches never
overlap, so workers and torchrun ranks write disjoint rows of the same files without locks. Before a reused
folder is trusted, a few random stored images are decoded again and compared byte for byte; any difference
makes a new folder. Only the readers' ``read(i)``/``identity()``/``kind`` are used, never paths: the cache
works for every source.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import jsonio
from ..errors import SenetZooError
from ..files import atomic_write_text, process_alive
from ..images.preprocess import BadImage, Preprocessing

FORMAT = 2
NOT_STORED, BAD, STORED = -1, 0, 1
CHECK_IMAGES = 4  # re-decoded when a stored folder is reused

_FOLDER = re.compile(r"([0-9a-f]{16})-[0-9a-f]{8}")
_TEMPORARY = re.compile(r"\.(?:[0-9a-f]{16}-[0-9a-f]{8}\.tmp|trash-[0-9a-f]{16}-[0-9a-f]{8})-(\d+)")
_FORMAT_1 = ("images.npy", "status.npy", "key.json")  # format 1 kept one key's arrays in the folder itself
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


class CacheUnavailable(Exception):
    """This run cannot use the cache (no room for it, a location it cannot write): one note, the run decodes."""


def decoder_version(prep: Preprocessing) -> str:
    if prep.name == "caffe":
        import cv2

        return f"opencv {cv2.__version__}"
    import PIL

    return f"pillow {PIL.__version__}"


def cache_key(reader, prep: Preprocessing) -> dict:
    identity = json.dumps([list(t) for t in reader.identity()], separators=(",", ":"))
    return {"format": FORMAT, "source_kind": getattr(reader, "kind", "?"), "num_images": len(reader),
            "identity_sha256": hashlib.sha256(identity.encode("utf-8")).hexdigest(),
            "preprocess": [prep.name, prep.resize, prep.crop], "decoder": decoder_version(prep)}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.2f} GiB"


def _why(e: OSError) -> str:
    return e.strerror or str(e)


class DecodeCache:
    """One key's folder, opened by this run: its arrays mapped and a shared lock held until ``close``.
    Forked DataLoader workers inherit both; a spawned process maps the same files again (checked by inode)."""

    def __init__(self, folder: Path, key: dict, crop: int):
        self.folder, self.key, self.crop = Path(folder), key, crop
        self.n = int(key["num_images"])
        self._images = self._status = None
        self._inodes: dict[str, tuple[int, int]] = {}
        self._lock_fd: int | None = None
        self.writable = False        # rows at -1 may be stored (False: complete, or a folder we cannot write)
        self.reused = False          # the folder existed with this key and passed the check
        self.stored_at_start = 0     # rows already stored or bad when this run opened it
        self.checked: list[int] = []  # rows re-decoded and compared when reusing

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = state["_status"] = state["_lock_fd"] = None
        return state

    # ---------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike, reader, prep: Preprocessing,
             log: Callable[[str], None] = print) -> "DecodeCache":
        """This key's folder under ``root``: the current one when it is intact and passes the check, else a
        new one. ``CacheUnavailable`` when neither can be had (no room, a location that cannot be written);
        ``SenetZooError`` when ``root`` cannot be a folder at all (a file is in the way)."""
        key = cache_key(reader, prep)
        digest = key_digest(key)
        base = Path(root) / f"{prep.name}-{prep.resize}-{prep.crop}"
        _make_folder(base, Path(root))
        cache = cls._current(base, digest, key, prep.crop, log)
        if cache is not None:
            if cache.verify(reader, prep):
                cache.reused = True
            else:
                log(f"cache {cache.folder}: stored crops differ from a fresh decode; rebuilding it")
                cache.close()
                cache = None
        if cache is None:
            cache = cls._build(base, digest, key, prep.crop)
        cache._tidy(base, log)
        cache.stored_at_start = int((cache.status != NOT_STORED).sum())
        return cache

    @classmethod
    def attach(cls, folder: str | os.PathLike, key: dict, crop: int) -> "DecodeCache":
        """The folder another process of this run opened (torchrun: rank 0's), as it is: never replaced."""
        cache = cls(Path(folder), key, crop)
        problem = cache._hold_and_map()
        if problem:
            raise SenetZooError(folder, f"decode cache not usable by this rank: {problem}")
        return cache

    @classmethod
    def _current(cls, base: Path, digest: str, key: dict, crop: int, log) -> "DecodeCache | None":
        with _folder_lock(base):
            name = _read_pointer(base, digest)
            if name is None:
                return None
            cache = cls(base / name, key, crop)
            problem = cache._hold_and_map()
        if problem:
            log(f"cache {cache.folder}: {problem}; rebuilding it")
            cache.close()
            return None
        return cache

    def _hold_and_map(self) -> str | None:
        """Take a shared lock on the folder (a run that holds it keeps it), check its key, map the arrays;
        what is wrong with it, or None."""
        fd = _try_lock(self.folder, fcntl.LOCK_SH)
        self._lock_fd = None if fd is None or fd is False else fd
        if self._lock_fd is None and (self.folder / "lock").exists():
            return "its lock cannot be taken (being removed, or not readable)"
        try:
            stored = jsonio.load_path(self.folder / "key.json")
        except (OSError, ValueError):
            stored = None
        if stored != self.key:
            return "key.json missing or not this folder's key"
        try:
            status = np.load(self.folder / "status.npy", mmap_mode="r")
            complete = status.shape == (self.n,) and bool((status != NOT_STORED).all())
            writable = not complete and _can_write(self.folder / "images.npy") and _can_write(
                self.folder / "status.npy")
            self._map(writable)
        except (OSError, ValueError):
            return "images.npy or status.npy unreadable or of the wrong shape"
        if (self._images.shape != (self.n, self.crop, self.crop, 3) or self._images.dtype != np.uint8
                or self._status.shape != (self.n,) or self._status.dtype != np.int8):
            return "images.npy or status.npy unreadable or of the wrong shape"
        return None

    def _map(self, writable: bool) -> None:
        mode = "r+" if writable else "r"
        self._images = np.load(self.folder / "images.npy", mmap_mode=mode)
        self._status = np.load(self.folder / "status.npy", mmap_mode=mode)
        self._inodes = {name: _inode(self.folder / name) for name in ("images.npy", "status.npy")}
        self.writable = writable

    @classmethod
    def _build(cls, base: Path, digest: str, key: dict, crop: int) -> "DecodeCache":
        """A new folder for ``key``, complete before it is renamed into place and pointed to."""
        name = f"{digest}-{secrets.token_hex(4)}"
        tmp = base / f".{name}.tmp-{os.getpid()}"
        n = int(key["num_images"])
        nbytes = n * crop * crop * 3
        lock_fd = None
        try:
            tmp.mkdir()
            lock_fd = os.open(tmp / "lock", os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
            (tmp / "key.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
            _allocate(tmp / "images.npy", np.uint8, (n, crop, crop, 3))
            _allocate(tmp / "status.npy", np.int8, (n,), fill=NOT_STORED)
            os.rename(tmp, base / name)
            with _folder_lock(base):
                atomic_write_text(base / f"{digest}.current", name + "\n")
        except (OSError, SenetZooError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if lock_fd is not None:
                os.close(lock_fd)
            code = getattr(e, "errno", None)
            if code in _NO_ROOM:
                free = shutil.disk_usage(base).free
                raise CacheUnavailable(f"no room for the crops of {n:,} images ({_gib(nbytes)}; {_gib(free)} free): "
                                       f"{_why(e)}") from None
            if code in _NOT_WRITABLE:
                raise CacheUnavailable(f"cannot write there ({_why(e)})") from None
            if isinstance(e, SenetZooError):
                raise CacheUnavailable(e.message) from None
            raise SenetZooError(base, f"cannot create the decode cache ({_why(e)})") from None
        cache = cls(base / name, key, crop)
        cache._lock_fd = lock_fd
        cache._map(writable=True)
        return cache

    def _tidy(self, base: Path, log) -> None:
        """Remove what no run holds in ``base``: folders but this one and its key's current, leftovers of
        killed builds, format 1's arrays. Folders go under the folder lock (renamed away), their bytes after."""
        if not os.access(base, os.W_OK):
            return
        doomed: list[tuple[Path, int | None]] = []
        digest = self.folder.name[:16]
        with _folder_lock(base):
            keep = {self.folder.name, _read_pointer(base, digest)}
            for entry in _entries(base):
                name = entry.name
                match = _FOLDER.fullmatch(name)
                if match and entry.is_dir(follow_symlinks=False) and name not in keep:
                    fd = _try_lock(Path(entry.path), fcntl.LOCK_EX)
                    if fd is False:
                        continue  # a live run holds it
                    other = _load_key(Path(entry.path))
                    pointed = _read_pointer(base, match.group(1)) == name  # read while its folder is there
                    trash = base / f".trash-{name}-{os.getpid()}"
                    os.rename(entry.path, trash)
                    if pointed:
                        Path(base / f"{match.group(1)}.current").unlink(missing_ok=True)
                    doomed.append((trash, fd))
                    diff = sorted(k for k in self.key if other is None or other.get(k) != self.key[k])
                    log(f"cache {base}: removed {name}, the crops of other {', '.join(diff) or 'settings'}")
                elif (match := _TEMPORARY.fullmatch(name)) and not process_alive(int(match.group(1))):
                    doomed.append((Path(entry.path), None))
                elif name.endswith(".current") and _read_pointer(base, name[:-8]) is None:
                    Path(entry.path).unlink(missing_ok=True)
                elif name in _FORMAT_1:
                    Path(entry.path).unlink(missing_ok=True)
                    log(f"cache {base}: removed {name} of an earlier senet-zoo's cache layout")
        for path, fd in doomed:
            shutil.rmtree(path, ignore_errors=True)
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        """Unmap and let go of the folder (forked workers let go when they exit)."""
        self._images = self._status = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ----------------------------------------------------------------------------------------- arrays
    def _remap(self, name: str) -> np.ndarray:
        """A spawned process maps the files its run opened: the same inode, or a refusal."""
        path = self.folder / name
        if _inode(path) != self._inodes.get(name):
            raise SenetZooError(path, "was replaced while this run used it")
        return np.load(path, mmap_mode="r+" if self.writable else "r")

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = self._remap("images.npy")
        return self._images

    @property
    def status(self) -> np.ndarray:
        if self._status is None:
            self._status = self._remap("status.npy")
        return self._status

    @property
    def complete(self) -> bool:
        """Every row stored or known bad: nothing left to decode."""
        return bool((self.status != NOT_STORED).all())

    def verify(self, reader, prep: Preprocessing, k: int = CHECK_IMAGES) -> bool:
        """Re-decode ``k`` random stored images; True when all equal their stored crops."""
        stored = np.flatnonzero(self.status == STORED)
        self.checked = sorted(int(i) for i in random.sample(list(stored), min(k, len(stored))))
        out = np.empty((self.crop, self.crop, 3), np.uint8)
        for i in self.checked:
            try:
                prep.decode_rgb(reader.read(int(i)), out)
            except BadImage:
                return False
            if not np.array_equal(out, self.images[i]):
                return False
        return True

    def fill(self, start: int, images: np.ndarray, status: np.ndarray, reader, prep: Preprocessing,
             ok: int, bad: int) -> None:
        """Rows ``start .. start + len(status)`` into ``images``/``status``: stored rows are copied, the
        others decoded (and stored, image then status, when the folder is writable)."""
        n = len(status)
        have = np.asarray(self.status[start:start + n])
        if (have != NOT_STORED).all():  # the common case of a reused cache: one copy per batch
            images[:n] = self.images[start:start + n]
            status[:] = np.where(have == STORED, ok, bad)
            return
        for row in range(n):
            i = start + row
            if have[row] == STORED:
                images[row] = self.images[i]
                status[row] = ok
            elif have[row] == BAD:
                status[row] = bad
            else:
                try:
                    prep.decode_rgb(reader.read(i), images[row])
                except BadImage:
                    status[row] = bad
                    if self.writable:
                        self.status[i] = BAD
                else:
                    status[row] = ok
                    if self.writable:
                        self.images[i] = images[row]
                        self.status[i] = STORED

    def describe(self) -> dict:
        return {"folder": str(self.folder.resolve()), "key": self.key, "reused": self.reused,
                "stored_at_start": self.stored_at_start, "decoded": self.n - self.stored_at_start,
                "checked_images": self.checked, "writable": self.writable}


# ------------------------------------------------------------------------------------- the folder on disk

def _make_folder(base: Path, root: Path) -> None:
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in _NOT_WRITABLE:
            raise CacheUnavailable(f"cannot make a folder in {root} ({_why(e)})") from None
        raise SenetZooError(root, f"cannot create the decode cache ({_why(e)})") from None


def _allocate(path: Path, dtype, shape: tuple, fill: int | None = None) -> None:
    """A ``.npy`` of ``shape`` whose blocks are all allocated now: ENOSPC/EFBIG here, not SIGBUS later."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    del array
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if fill is not None:
        array = np.load(path, mmap_mode="r+")
        array[:] = fill
        array.flush()
        del array


@contextlib.contextmanager
def _folder_lock(base: Path) -> Iterator[None]:
    """``base/.lock`` held exclusively (none on a read-only location without one: nothing there changes)."""
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            fd = os.open(base / ".lock", flags, 0o666)
            break
        except OSError:
            continue
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _try_lock(folder: Path, operation: int) -> int | None | bool:
    """The folder's lock taken without waiting, shared (``fcntl.LOCK_SH``) or exclusive (``fcntl.LOCK_EX``):
    its descriptor; None: the folder has no lock file (or it cannot be opened); False: a run holds it."""
    try:
        fd = os.open(folder / "lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    return fd


def _read_pointer(base: Path, digest: str) -> str | None:
    """The folder name ``<digest>.current`` names, when that folder exists."""
    try:
        name = (base / f"{digest}.current").read_text(encoding="ascii")[:64].strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _FOLDER.fullmatch(name) or not name.startswith(digest) or not (base / name).is_dir():
        return None
    return name


def _load_key(folder: Path) -> dict | None:
    try:
        key = jsonio.load_path(folder / "key.json")
    except (OSError, ValueError):
        return None
    return key if isinstance(key, dict) else None


def _entries(base: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(base))
    except OSError:
        return []


def _can_write(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR))
    except OSError:
        return False
    return True


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino
