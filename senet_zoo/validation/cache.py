"""Decode once (``validate --cache DIR``): the preprocessed uint8 crops of an evaluation set, memory-mapped.

Decoding + resizing is the CPU cost of an evaluation (about 1.4 ms per ImageNet JPEG per core); the seven
models at 224 all see the same crops, so the first run stores them and later runs only copy them.

``DIR/<preprocess>-<resize>-<crop>/`` holds

* ``images.npy``: (N, crop, crop, 3) uint8 RGB, memory-mapped (a sparse file until filled);
* ``status.npy``: (N,) int8 per image: -1 not stored yet, 0 bad image (the decoder refused it), 1 stored;
* ``key.json``: what the crops depend on: the reader's ``identity()`` (name, size, mtime_ns of every image)
  and kind, the preprocessing (name, resize, crop) and the decoder's version (OpenCV, or Pillow for ``pil``).

So the models at 224 (resize 256) share one folder and SENet-154 at 320 (resize 365) has its own. A run
whose key differs from the folder's rebuilds it from scratch; a run with the same key reads every stored
row instead of decoding it and decodes (and stores) only the rows still at -1, so an interrupted first run
is completed by the next. Before a reused folder is trusted, a few random stored images are decoded again
and compared byte for byte; any difference rebuilds it. Rows are written by whichever DataLoader worker
decodes them (image first, then its status), batches never overlap, so workers and torchrun ranks write
disjoint rows of the same files without locks.

Only the readers' ``read(i)``/``identity()``/``kind`` are used, never paths: the cache works for every source.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np

from .. import jsonio
from ..errors import SenetZooError
from ..images.preprocess import BadImage, Preprocessing

FORMAT = 1
NOT_STORED, BAD, STORED = -1, 0, 1
CHECK_IMAGES = 4  # re-decoded when a stored folder is reused


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


class DecodeCache:
    """One cache folder. Picklable into DataLoader workers: each process maps the files itself, lazily."""

    def __init__(self, folder: Path, key: dict, crop: int):
        self.folder, self.key, self.crop = Path(folder), key, crop
        self.n = int(key["num_images"])
        self._images = self._status = None
        self.reused = False          # the folder existed with this key
        self.stored_at_start = 0     # rows already stored when this run opened it
        self.checked: list[int] = []  # rows re-decoded and compared when reusing

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = state["_status"] = None
        return state

    # ---------------------------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike, reader, prep: Preprocessing, create: bool = True,
             log=print) -> "DecodeCache":
        """The folder for ``prep`` under ``root``, reused when its key matches, else (re)built. With
        ``create=False`` (torchrun ranks other than 0, after rank 0 opened it) it must already match."""
        root = Path(root)
        key = cache_key(reader, prep)
        folder = root / f"{prep.name}-{prep.resize}-{prep.crop}"
        cache = cls(folder, key, prep.crop)
        stored = cache._stored_key()
        if stored == key and cache._arrays_intact():
            cache.reused = True
            if create and not cache.verify(reader, prep):
                log(f"cache {folder}: stored crops differ from a fresh decode; rebuilding it")
                cache._build()
                cache.reused = False
        elif not create:
            raise SenetZooError(folder, "decode cache not ready for this run (rank 0 should have built it)")
        else:
            if stored == key:
                log(f"cache {folder}: images.npy or status.npy unreadable or of the wrong shape; rebuilding it")
            elif stored is not None:
                diff = sorted(k for k in key if stored.get(k) != key[k])
                log(f"cache {folder}: built for other {', '.join(diff)}; rebuilding it")
            cache._build()
        cache.stored_at_start = int((cache.status != NOT_STORED).sum())
        return cache

    def _stored_key(self) -> dict | None:
        """The folder's key.json (None when absent or not a JSON object: a foreign or damaged folder)."""
        try:
            key = jsonio.load_path(self.folder / "key.json")
        except (OSError, ValueError):
            return None
        return key if isinstance(key, dict) else None

    def _arrays_intact(self) -> bool:
        try:
            images = np.load(self.folder / "images.npy", mmap_mode="r")
            status = np.load(self.folder / "status.npy", mmap_mode="r")
        except (OSError, ValueError):
            return False
        return (images.shape == (self.n, self.crop, self.crop, 3) and images.dtype == np.uint8
                and status.shape == (self.n,) and status.dtype == np.int8)

    def _build(self) -> None:
        self._images = self._status = None
        parent = self.folder.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = parent / f".{self.folder.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            # the image file stays sparse: only the header and the last byte are written now
            images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8,
                                               shape=(self.n, self.crop, self.crop, 3))
            del images
            status = np.lib.format.open_memmap(tmp / "status.npy", mode="w+", dtype=np.int8, shape=(self.n,))
            status[:] = NOT_STORED
            status.flush()
            del status
            (tmp / "key.json").write_text(json.dumps(self.key, indent=2) + "\n", encoding="utf-8")
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(tmp, self.folder)
        except OSError as e:
            raise SenetZooError(self.folder, f"cannot create the decode cache ({e.strerror or e})") from None

    # ----------------------------------------------------------------------------------------- arrays
    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.folder / "images.npy", mmap_mode="r+")
        return self._images

    @property
    def status(self) -> np.ndarray:
        if self._status is None:
            self._status = np.load(self.folder / "status.npy", mmap_mode="r+")
        return self._status

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
        others decoded and stored (image, then status)."""
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
                    self.status[i] = BAD
                else:
                    status[row] = ok
                    self.images[i] = images[row]
                    self.status[i] = STORED

    def describe(self) -> dict:
        return {"folder": str(self.folder.resolve()), "key": self.key, "reused": self.reused,
                "stored_at_start": self.stored_at_start, "decoded": self.n - self.stored_at_start,
                "checked_images": self.checked}
