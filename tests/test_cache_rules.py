"""The decode cache's rules, in process on a handful of tiny images (issue 18: fast enough to run per mutant).

A reader here is a list of encoded images in memory (``read``/``identity``/``kind``, all the cache uses): PNGs of
one colour each, whose crop is that colour in every pixel whatever the resize (an expectation that needs no
decoder), and bytes that are no image. Each test holds the cache to what is on disk (files, their contents,
locks held or free) and to its literal notes; ``test_validation_cache*.py`` run the same rules through whole
``validate`` runs.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import PIL
import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.images.preprocess import Preprocessing
from senet_zoo.validation import cache as cache_mod
from senet_zoo.validation.cache import (CacheUnavailable, DecodeCache, _allocate, _can_write, _folder_lock, _gib,
                                        _load_key, _read_pointer, _try_lock, _why, cache_key, key_digest)

CROP = 8
PREP = Preprocessing("caffe", 10, CROP)
# (R, G, B) of each image; None: bytes that are no image
COLOURS = [(200, 10, 30), (0, 128, 255), None, (77, 66, 55), (1, 2, 3), (250, 250, 0)]
NOT_AN_IMAGE = b"\xff\xd8 this is no JPEG at all"
FOLDER_NAME = re.compile(r"[0-9a-f]{16}-[0-9a-f]{8}")


def png(rgb, height=12, width=17) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((height, width, 3), rgb[::-1], np.uint8))  # OpenCV writes BGR
    assert ok
    return buf.tobytes()


class Images:
    """A reader: ``read(i)`` counts the rows it was asked for."""
    kind = "test-list"

    def __init__(self, colours=COLOURS, mtime=1000):
        self.blobs = [NOT_AN_IMAGE if c is None else png(c, 12 + i, 17 + 2 * i) for i, c in enumerate(colours)]
        self.mtime, self.sizes = mtime, [len(b) for b in self.blobs]  # what a source's identity says
        self.reads: list[int] = []

    def __len__(self):
        return len(self.blobs)

    def read(self, i):
        self.reads.append(i)
        return self.blobs[i]

    def identity(self):
        return [(f"img{i}.png", size, self.mtime + i) for i, size in enumerate(self.sizes)]


def crop_of(rgb) -> np.ndarray:
    return np.full((CROP, CROP, 3), rgb, np.uint8)


def quiet(*_):
    pass


class Log(list):
    def __call__(self, line):
        self.append(line)


def held(path: Path) -> bool:
    """Whether some open file description holds a lock on ``path`` (an exclusive one is refused)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def fill_all(cache: DecodeCache, reader) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((len(reader), CROP, CROP, 3), np.uint8)
    status = np.zeros(len(reader), np.int64)
    cache.fill(0, images, status, reader, PREP, 7, 3)
    return images, status


def base_of(root: Path) -> Path:
    return root / "caffe-10-8"


def open_fds(where: Path) -> list[str]:
    """What this process's descriptors have open under ``where`` (a leaked lock shows as ``.../lock``)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(where) + os.sep):
            out.append(target)
    return sorted(out)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ------------------------------------------------------------------------------------------------ the key

def test_the_key_is_the_images_the_preprocessing_and_the_decoder():
    reader = Images([(1, 2, 3), (4, 5, 6)])
    sizes = [len(b) for b in reader.blobs]
    identity = f'[["img0.png",{sizes[0]},1000],["img1.png",{sizes[1]},1001]]'.encode()
    assert cache_key(reader, PREP) == {
        "format": 2, "source_kind": "test-list", "num_images": 2,
        "identity_sha256": hashlib.sha256(identity).hexdigest(),
        "preprocess": ["caffe", 10, 8], "decoder": f"opencv {cv2.__version__}"}
    assert cache_key(reader, Preprocessing("pil", 12, 9))["decoder"] == f"pillow {PIL.__version__}"

    class NoKind:  # a reader that says nothing of its kind
        __len__, read, identity = (lambda self: 2), reader.read, reader.identity

    assert cache_key(NoKind(), PREP)["source_kind"] == "?"


def test_the_key_digest_is_16_hex_of_the_sorted_json():
    assert key_digest({"b": 1, "a": [2, "x"]}) == hashlib.sha256(b'{"a": [2, "x"], "b": 1}').hexdigest()[:16]


def test_small_helpers():
    assert _gib(3 << 29) == "1.50 GiB" and _gib(0) == "0.00 GiB"
    assert _why(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert _why(OSError("no strerror")) == "no strerror"


# ----------------------------------------------------------------------------------------- a new folder

def test_a_first_open_makes_one_complete_folder_and_its_pointer(tmp_path):
    reader = Images()
    old = os.umask(0o022)
    try:
        cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    finally:
        os.umask(old)
    base = base_of(tmp_path)
    key = cache_key(reader, PREP)
    digest = key_digest(key)
    assert cache.folder.parent == base and FOLDER_NAME.fullmatch(cache.folder.name)
    assert cache.folder.name.startswith(digest + "-")
    assert sorted(os.listdir(base)) == sorted([".lock", cache.folder.name, f"{digest}.current"])
    assert (base / f"{digest}.current").read_text() == cache.folder.name + "\n"
    assert sorted(os.listdir(cache.folder)) == ["images.npy", "key.json", "lock", "status.npy"]
    text = (cache.folder / "key.json").read_text()
    assert json.loads(text) == key and text.endswith("}\n") and '\n  "format": 2,' in text
    assert os.stat(cache.folder / "lock").st_mode & 0o777 == 0o644  # 0o666 less the umask: others' runs open it
    images, status = np.load(cache.folder / "images.npy"), np.load(cache.folder / "status.npy")
    assert images.shape == (6, 8, 8, 3) and images.dtype == np.uint8 and not images.any()
    assert status.shape == (6,) and status.dtype == np.int8 and (status == -1).all()
    st = os.stat(cache.folder / "images.npy")
    assert st.st_blocks * 512 >= st.st_size == 128 + 6 * 8 * 8 * 3  # allocated now, not a sparse file
    assert cache.writable and not cache.reused and cache.stored_at_start == 0 and cache.checked == []
    assert not cache.complete and cache.n == 6 and cache.crop == 8 and cache.key == key
    assert reader.reads == []
    assert held(cache.folder / "lock")
    cache.close()
    assert not held(cache.folder / "lock") and open_fds(tmp_path) == []  # the lock and the mappings let go
    cache.close()  # twice is harmless


def test_describe_names_the_real_folder(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    cache = DecodeCache.open(tmp_path / "link", Images(), PREP, log=quiet)
    fill_all(cache, Images())
    cache.close()
    cache = DecodeCache.open(tmp_path / "link", Images(), PREP, log=quiet)
    assert cache.describe() == {
        "folder": str(real / "caffe-10-8" / cache.folder.name), "key": cache_key(Images(), PREP), "reused": True,
        "stored_at_start": 6, "decoded": 0, "checked_images": cache.checked, "writable": False}
    assert len(cache.checked) == 4
    cache.close()


# ----------------------------------------------------------------------------------------------- filling

def test_fill_decodes_stores_and_then_copies(tmp_path):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    images = np.full((4, CROP, CROP, 3), 99, np.uint8)
    status = np.zeros(4, np.int64)
    cache.fill(1, images, status, reader, PREP, 7, 3)  # rows 1..4
    assert reader.reads == [1, 2, 3, 4]
    assert status.tolist() == [7, 3, 7, 7]
    for row, colour in zip((0, 2, 3), (COLOURS[1], COLOURS[3], COLOURS[4])):
        assert np.array_equal(images[row], crop_of(colour))
    on_disk = np.load(cache.folder / "status.npy")
    assert on_disk.tolist() == [-1, 1, 0, 1, 1, -1]
    stored = np.load(cache.folder / "images.npy")
    assert np.array_equal(stored[1], crop_of(COLOURS[1])) and np.array_equal(stored[4], crop_of(COLOURS[4]))
    assert not stored[[0, 2, 5]].any()  # the bad row stays zeros
    assert not cache.complete

    # rows 0..5: 1..4 copied, 0 and 5 decoded
    reader.reads.clear()
    images, status = fill_all(cache, reader)
    assert reader.reads == [0, 5]
    assert status.tolist() == [7, 7, 3, 7, 7, 7]
    for row, colour in enumerate(COLOURS):
        if colour is not None:
            assert np.array_equal(images[row], crop_of(colour)), row
    assert cache.complete and (np.load(cache.folder / "status.npy") == [1, 1, 0, 1, 1, 1]).all()

    # all stored: copies only, even of a bad row, into a batch buffer that was not clean
    reader.reads.clear()
    images = np.full((2, CROP, CROP, 3), 99, np.uint8)
    status = np.full(2, 5, np.int64)
    cache.fill(1, images, status, reader, PREP, 7, 3)
    assert reader.reads == [] and status.tolist() == [7, 3]
    assert np.array_equal(images[0], crop_of(COLOURS[1]))
    images = np.full((3, CROP, CROP, 3), 99, np.uint8)
    status = np.full(3, 5, np.int64)
    cache.fill(3, images, status, reader, PREP, 7, 3)
    assert reader.reads == [] and status.tolist() == [7, 7, 7]
    for row in range(3):
        assert np.array_equal(images[row], crop_of(COLOURS[3 + row])), row
    cache.close()


def test_a_bad_row_already_stored_is_not_decoded_again(tmp_path):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    cache.fill(2, np.zeros((1, CROP, CROP, 3), np.uint8), np.zeros(1, np.int64), reader, PREP, 7, 3)
    reader.reads.clear()
    status = np.zeros(2, np.int64)
    cache.fill(2, np.zeros((2, CROP, CROP, 3), np.uint8), status, reader, PREP, 7, 3)  # row 3 not stored yet
    assert reader.reads == [3] and status.tolist() == [3, 7]
    cache.close()


def test_a_folder_that_cannot_be_written_is_read_and_the_rest_decoded_not_stored(tmp_path, monkeypatch):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    cache.fill(0, np.zeros((2, CROP, CROP, 3), np.uint8), np.zeros(2, np.int64), reader, PREP, 7, 3)
    cache.close()
    monkeypatch.setattr(cache_mod, "_can_write", lambda path: False)
    before = {p.name: p.read_bytes() for p in cache.folder.iterdir()}
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    assert cache.reused and not cache.writable and cache.stored_at_start == 2
    assert cache.describe()["decoded"] == 4
    assert not cache.images.flags.writeable and not cache.status.flags.writeable
    reader.reads.clear()
    images, status = fill_all(cache, reader)
    assert reader.reads == [2, 3, 4, 5]
    assert status.tolist() == [7, 7, 3, 7, 7, 7]
    assert np.array_equal(images[5], crop_of(COLOURS[5])) and np.array_equal(images[0], crop_of(COLOURS[0]))
    assert {p.name: p.read_bytes() for p in cache.folder.iterdir()} == before  # nothing written
    cache.close()


# ---------------------------------------------------------------------------------------------- reusing

def test_a_second_open_reuses_the_folder_after_checking_four_stored_images(tmp_path):
    reader = Images()
    first = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(first, reader)
    first.close()
    log = Log()
    again = Images()
    cache = DecodeCache.open(tmp_path, again, PREP, log=log)
    assert log == []
    assert cache.folder == first.folder and cache.reused and cache.stored_at_start == 6
    assert len(cache.checked) == 4 and set(cache.checked) <= {0, 1, 3, 4, 5}  # stored images, not the bad one
    assert cache.checked == sorted(set(cache.checked)) and again.reads == cache.checked
    assert cache.complete and not cache.writable
    assert not cache.images.flags.writeable  # complete: mapped read-only
    assert held(cache.folder / "lock")
    cache.close()


def test_a_partly_filled_folder_is_reused_checking_what_is_stored(tmp_path):
    reader = Images()
    first = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    first.fill(0, np.zeros((3, CROP, CROP, 3), np.uint8), np.zeros(3, np.int64), reader, PREP, 7, 3)
    first.close()
    again = Images()
    cache = DecodeCache.open(tmp_path, again, PREP, log=quiet)
    assert cache.reused and cache.writable and cache.stored_at_start == 3 and cache.checked == [0, 1]
    assert again.reads == [0, 1] and cache.images.flags.writeable
    cache.close()


def test_verify_checks_k_stored_rows(tmp_path):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(cache, reader)
    reader.reads.clear()
    assert cache.verify(reader, PREP, k=2) and len(cache.checked) == 2 and reader.reads == cache.checked
    assert cache.verify(reader, PREP, k=10) and cache.checked == [0, 1, 3, 4, 5]
    cache.close()


@pytest.mark.parametrize("change", ["pixels", "now bad"])
def test_stored_crops_that_differ_from_a_fresh_decode_make_a_new_folder(tmp_path, change):
    reader = Images()
    first = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(first, reader)
    first.close()
    if change == "pixels":
        images = np.load(first.folder / "images.npy", mmap_mode="r+")
        images[[0, 1, 3, 4, 5], 3, 3, 0] ^= 1  # one bit of one pixel in every stored image
        images.flush()
        del images
    else:
        reader.blobs = [NOT_AN_IMAGE] * 6  # same identity, images that no longer decode
    log = Log()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=log)
    base = base_of(tmp_path)
    assert log == [f"cache {first.folder}: stored crops differ from a fresh decode; rebuilding it",
                   f"cache {base}: removed {first.folder.name}, the crops of other settings"]
    assert cache.folder != first.folder and not first.folder.exists() and not cache.reused
    assert cache.stored_at_start == 0 and cache.writable and cache.checked == []
    assert (base / f"{key_digest(cache.key)}.current").read_text() == cache.folder.name + "\n"
    assert sorted(os.listdir(base)) == sorted([".lock", cache.folder.name, f"{cache.folder.name[:16]}.current"])
    cache.close()


@pytest.mark.parametrize("damage, problem", [
    ("other decoder", "key.json missing or not this folder's key"),
    ("key list", "key.json missing or not this folder's key"),
    ("no key", "key.json missing or not this folder's key"),
    ("status longer", "images.npy or status.npy unreadable or of the wrong shape"),
    ("status int16", "images.npy or status.npy unreadable or of the wrong shape"),
    ("images other crop", "images.npy or status.npy unreadable or of the wrong shape"),
    ("images fewer", "images.npy or status.npy unreadable or of the wrong shape"),
    ("images float", "images.npy or status.npy unreadable or of the wrong shape"),
    ("images truncated", "images.npy or status.npy unreadable or of the wrong shape"),
    ("status missing", "images.npy or status.npy unreadable or of the wrong shape"),
    ("lock held", "its lock cannot be taken (being removed, or not readable)"),
])
def test_a_folder_that_is_not_what_its_key_says_is_replaced(tmp_path, damage, problem):
    reader = Images()
    first = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(first, reader)
    first.close()
    folder = first.folder
    key = json.loads((folder / "key.json").read_text())
    blocker = None
    if damage == "other decoder":
        (folder / "key.json").write_text(json.dumps({**key, "decoder": "opencv 0.0.1"}))
    elif damage == "key list":
        (folder / "key.json").write_text("[1, 2, 3]")
    elif damage == "no key":
        (folder / "key.json").unlink()
    elif damage == "status longer":
        np.save(folder / "status.npy", np.array([1, 1, 0, 1, 1, 1, 0], np.int8))  # the stored rows still pass
    elif damage == "status int16":
        np.save(folder / "status.npy", np.ones(6, np.int16))
    elif damage == "images other crop":
        np.save(folder / "images.npy", np.zeros((6, 7, 7, 3), np.uint8))
    elif damage == "images fewer":
        np.save(folder / "images.npy", np.zeros((5, 8, 8, 3), np.uint8))
    elif damage == "images float":
        np.save(folder / "images.npy", np.zeros((6, 8, 8, 3), np.float32))
    elif damage == "images truncated":
        with open(folder / "images.npy", "r+b") as f:
            f.truncate(1000)
    elif damage == "status missing":
        (folder / "status.npy").unlink()
    else:  # a run tidying the folder away holds its lock exclusively
        blocker = os.open(folder / "lock", os.O_RDONLY)
        fcntl.flock(blocker, fcntl.LOCK_EX)
    log = Log()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=log)
    assert log[0] == f"cache {folder}: {problem}; rebuilding it"
    assert cache.folder != folder and not cache.reused and cache.stored_at_start == 0
    removed = f"cache {base_of(tmp_path)}: removed {folder.name}, the crops of other "
    if damage == "other decoder":
        assert log[1:] == [removed + "decoder"] and not folder.exists()
    elif damage in ("key list", "no key"):
        assert log[1:] == [removed + "decoder, format, identity_sha256, num_images, preprocess, source_kind"]
    elif damage == "lock held":
        assert log[1:] == [] and folder.is_dir()  # its holder is live: left alone
        os.close(blocker)
    else:
        assert log[1:] == [removed + "settings"]
    assert not held(folder / "lock") if folder.exists() else True
    cache.close()


def test_a_folder_without_a_lock_file_is_still_used(tmp_path):
    reader = Images()
    first = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(first, reader)
    first.close()
    (first.folder / "lock").unlink()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    assert cache.folder == first.folder and cache.reused
    cache.close()


def test_a_held_folder_survives_until_its_run_closes_it(tmp_path):
    """A run keeps its folder (shared lock) while a second run replaces it; a third run, after the first closed
    it, removes it."""
    reader = Images()
    one = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    fill_all(one, reader)
    images = np.load(one.folder / "images.npy", mmap_mode="r+")
    images[:, 0, 0, 1] ^= 4
    images.flush()
    del images
    log = Log()
    two = DecodeCache.open(tmp_path, reader, PREP, log=log)
    assert two.folder != one.folder and one.folder.is_dir() and len(log) == 1  # no "removed"
    fill_all(two, reader)
    two.close()
    one.close()
    log = Log()
    three = DecodeCache.open(tmp_path, reader, PREP, log=log)
    assert three.folder == two.folder and three.reused and not one.folder.exists()
    assert log == [f"cache {base_of(tmp_path)}: removed {one.folder.name}, the crops of other settings"]
    three.close()


# ------------------------------------------------------------------------------------- the pointer files

def test_read_pointer_accepts_only_an_existing_folder_of_its_digest(tmp_path):
    digest = "0123456789abcdef"
    name = f"{digest}-89abcdef"
    (tmp_path / name).mkdir()
    pointer = tmp_path / f"{digest}.current"
    assert _read_pointer(tmp_path, digest) is None  # no pointer
    pointer.write_text(name + "\n")
    assert _read_pointer(tmp_path, digest) == name
    pointer.write_text(" " + name + "\n\n" + "x" * 20)  # what follows its first 64 characters is ignored
    assert _read_pointer(tmp_path, digest) is None
    pointer.write_text(" " + name + "\n" + " " * 37 + "x" * 20)
    assert _read_pointer(tmp_path, digest) == name
    other = "fedcba9876543210-89abcdef"
    (tmp_path / other).mkdir()
    pointer.write_text(other)
    assert _read_pointer(tmp_path, digest) is None  # another key's folder
    pointer.write_text(f"{digest}-99999999")
    assert _read_pointer(tmp_path, digest) is None  # no such folder
    (tmp_path / f"{digest}-0000000g").mkdir()
    pointer.write_text(f"{digest}-0000000g")
    assert _read_pointer(tmp_path, digest) is None  # not a folder name of ours
    (tmp_path / f"{digest}-0000000").mkdir()
    pointer.write_text(f"{digest}-0000000")
    assert _read_pointer(tmp_path, digest) is None
    (tmp_path / f"{digest}-00000000").write_text("a file")
    pointer.write_text(f"{digest}-00000000")
    assert _read_pointer(tmp_path, digest) is None
    pointer.write_bytes(name.encode() + b"\xe9")
    assert _read_pointer(tmp_path, digest) is None  # not ASCII
    pointer.unlink()
    pointer.mkdir()
    assert _read_pointer(tmp_path, digest) is None


def test_a_pointer_to_nothing_gets_a_new_folder(tmp_path):
    reader = Images()
    base = base_of(tmp_path)
    base.mkdir()
    digest = key_digest(cache_key(reader, PREP))
    (base / f"{digest}.current").write_text(f"{digest}-00000000\n")  # its folder is gone
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    assert not cache.reused and (base / f"{digest}.current").read_text() == cache.folder.name + "\n"
    cache.close()


# ---------------------------------------------------------------------------------------------- tidying

def test_opening_removes_what_no_run_holds_and_nothing_else(tmp_path):
    reader = Images()
    base = base_of(tmp_path)
    other_reader = Images([(9, 9, 9)] * 3)
    live = DecodeCache.open(tmp_path, other_reader, PREP, log=quiet)  # another key, held by a live run
    gone = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 2, mtime=5), PREP, log=quiet)  # another key, closed
    gone.close()
    gone_digest = gone.folder.name[:16]
    dead = dead_pid()
    leftovers = [f".{'a' * 16}-{'b' * 8}.tmp-{dead}", f".trash-{'c' * 16}-{'d' * 8}-{dead}"]
    alive = [f".{'a' * 16}-{'b' * 8}.tmp-{os.getpid()}", f".trash-{'c' * 16}-{'d' * 8}-{os.getpid()}"]
    for name in leftovers + alive:
        (base / name).mkdir()
        (base / name / "images.npy").write_bytes(b"x")
    (base / f"{'e' * 16}.current").write_text(f"{'e' * 16}-00000000\n")  # its folder is gone
    for name in ("images.npy", "status.npy", "key.json"):  # format 1's arrays in the folder itself
        (base / name).write_bytes(b"old")
    keep = ["notes.txt", f"{'f' * 16}-0000000", f"{'f' * 16}-12345678.old", "lock", "x.current.bak"]
    for name in keep:
        (base / name).write_text("someone's file")
    (base / f"{'1' * 16}-22222222").write_text("a file, not a folder")
    (tmp_path / "elsewhere").mkdir()
    (base / f"{'3' * 16}-44444444").symlink_to(tmp_path / "elsewhere")
    keep += [f"{'1' * 16}-22222222", f"{'3' * 16}-44444444"]

    log = Log()
    fds = open_fds(tmp_path)
    cache = DecodeCache.open(tmp_path, reader, PREP, log=log)
    digest = cache.folder.name[:16]
    assert sorted(os.listdir(base)) == sorted(
        [".lock", cache.folder.name, f"{digest}.current", live.folder.name, f"{live.folder.name[:16]}.current",
         *alive, *keep])
    assert (tmp_path / "elsewhere").is_dir()
    assert sorted(log) == sorted([
        f"cache {base}: removed {gone.folder.name}, the crops of other identity_sha256, num_images",
        *(f"cache {base}: removed {name} of an earlier senet-zoo's cache layout"
          for name in ("images.npy", "status.npy", "key.json"))])
    assert not (base / f"{gone_digest}.current").exists()
    assert not held(gone.folder.parent / ".lock")
    cache.close()
    assert open_fds(tmp_path) == fds  # the removed folders' locks let go
    live.close()


def test_a_removed_folder_keeps_another_keys_pointer_that_names_a_kept_folder(tmp_path):
    """The pointer of a removed folder's key goes only when it named that folder."""
    reader = Images()
    base = base_of(tmp_path)
    a = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 2, mtime=5), PREP, log=quiet)
    fill_all(a, a_reader := Images([(5, 5, 5)] * 2, mtime=5))
    images = np.load(a.folder / "images.npy", mmap_mode="r+")
    images[:] ^= 1
    images.flush()
    del images
    a2 = DecodeCache.open(tmp_path, a_reader, PREP, log=quiet)  # a new folder of a's key, a still held
    a.close()
    pointer = base / f"{a2.folder.name[:16]}.current"
    assert pointer.read_text() == a2.folder.name + "\n"
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    assert not a.folder.exists() and a2.folder.is_dir() and pointer.read_text() == a2.folder.name + "\n"
    cache.close()
    a2.close()


def test_tidying_leaves_the_folder_it_opened_when_the_pointer_names_another(tmp_path):
    """Two runs of one key: the one that opened the older folder keeps it while the pointer names the newer."""
    reader = Images()
    one = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    two = DecodeCache._build(base_of(tmp_path), one.folder.name[:16], one.key, CROP)
    log = Log()
    one._tidy(base_of(tmp_path), log)
    assert log == [] and two.folder.is_dir()  # the pointer's folder, held by two
    two.close()
    one._tidy(base_of(tmp_path), log)
    assert log == [] and two.folder.is_dir() and one.folder.is_dir()  # free, but the key's current one
    one.close()


# ------------------------------------------------------------------------------------ locks and mappings

def test_try_lock_says_missing_held_or_gives_a_descriptor(tmp_path):
    assert _try_lock(tmp_path, fcntl.LOCK_SH) is None
    (tmp_path / "lock").write_text("")
    a = _try_lock(tmp_path, fcntl.LOCK_SH)
    b = _try_lock(tmp_path, fcntl.LOCK_SH)
    assert isinstance(a, int) and a is not True and isinstance(b, int) and b is not True  # shared: both
    assert _try_lock(tmp_path, fcntl.LOCK_EX) is False
    os.close(a)
    os.close(b)
    c = _try_lock(tmp_path, fcntl.LOCK_EX)
    assert isinstance(c, int) and c is not True
    assert _try_lock(tmp_path, fcntl.LOCK_SH) is False
    os.close(c)
    fds = open_fds(tmp_path)
    with open(tmp_path / "lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert _try_lock(tmp_path, fcntl.LOCK_SH) is False
    assert open_fds(tmp_path) == fds  # a refused lock leaves no descriptor open


def test_the_folder_lock_is_exclusive_while_held(tmp_path):
    with _folder_lock(tmp_path):
        assert held(tmp_path / ".lock")
    assert not held(tmp_path / ".lock")
    fds = open_fds(tmp_path)
    with _folder_lock(tmp_path):
        pass
    assert open_fds(tmp_path) == fds


def test_the_folder_lock_on_a_location_that_cannot_be_written(tmp_path, monkeypatch):
    real_open = os.open

    def no_create(path, flags, *args):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_create)
    with _folder_lock(tmp_path):  # no .lock there and none can be made: nothing to lock
        pass
    (tmp_path / ".lock").write_text("")
    with _folder_lock(tmp_path):  # read-only, but locked
        assert held(tmp_path / ".lock")


def test_can_write_and_load_key(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    assert _can_write(tmp_path / "f") is True
    assert _can_write(tmp_path / "missing") is False and _can_write(tmp_path) is False
    fds = open_fds(tmp_path)
    _can_write(tmp_path / "f")
    assert open_fds(tmp_path) == fds
    assert _load_key(tmp_path) is None
    (tmp_path / "key.json").write_text("[1]")
    assert _load_key(tmp_path) is None
    (tmp_path / "key.json").write_text("{not json")
    assert _load_key(tmp_path) is None
    (tmp_path / "key.json").write_text('{"a": 1}')
    assert _load_key(tmp_path) == {"a": 1}


def test_allocate_makes_a_full_npy_of_the_shape_and_fill(tmp_path):
    _allocate(tmp_path / "a.npy", np.int8, (5,), fill=-1)
    a = np.load(tmp_path / "a.npy")
    assert a.dtype == np.int8 and a.tolist() == [-1] * 5
    _allocate(tmp_path / "b.npy", np.uint8, (3, 4, 4, 3))
    b = np.load(tmp_path / "b.npy")
    assert b.shape == (3, 4, 4, 3) and b.dtype == np.uint8 and not b.any()
    for name in ("a.npy", "b.npy"):
        st = os.stat(tmp_path / name)
        assert st.st_blocks * 512 >= st.st_size


def test_allocate_asks_for_every_byte(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, length: asked.append((offset, length)))
    _allocate(tmp_path / "a.npy", np.uint8, (2, 3))
    assert asked == [(0, 128 + 6)]


def test_a_pickled_cache_maps_the_same_files_and_the_original_keeps_its_lock(tmp_path):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    cache.fill(0, np.zeros((2, CROP, CROP, 3), np.uint8), np.zeros(2, np.int64), reader, PREP, 7, 3)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy._lock_fd is None and copy.folder == cache.folder and copy.writable and copy.key == cache.key
    assert np.array_equal(copy.images, np.load(cache.folder / "images.npy"))
    assert copy.status.tolist() == [1, 1, -1, -1, -1, -1]
    copy.fill(2, np.zeros((2, CROP, CROP, 3), np.uint8), np.zeros(2, np.int64), reader, PREP, 7, 3)
    copy.images.flush()
    copy.status.flush()
    assert np.load(cache.folder / "status.npy").tolist() == [1, 1, 0, 1, -1, -1]  # the copy writes through
    assert cache.status.tolist() == [1, 1, 0, 1, -1, -1]
    assert held(cache.folder / "lock")
    copy.close()
    assert held(cache.folder / "lock")  # the copy held nothing
    cache.close()
    assert not held(cache.folder / "lock")

    rank = DecodeCache.attach(cache.folder, cache.key, CROP)
    read_only = pickle.loads(pickle.dumps(rank))
    rank.close()
    read_only.writable = False
    assert not read_only.images.flags.writeable and not read_only.status.flags.writeable


@pytest.mark.parametrize("name", ["images.npy", "status.npy"])
def test_a_pickled_cache_refuses_files_replaced_since(tmp_path, name):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    copy = pickle.loads(pickle.dumps(cache))
    path = cache.folder / name
    shutil.copy(path, path.with_suffix(".new"))
    os.replace(path.with_suffix(".new"), path)  # same bytes, another file
    with pytest.raises(SenetZooError) as e:
        copy.images if name == "images.npy" else copy.status
    assert str(e.value) == f"{path}: was replaced while this run used it"
    other = "status" if name == "images.npy" else "images"
    assert getattr(copy, other).shape[0] == 6
    cache.close()


# ---------------------------------------------------------------------------------------------- attaching

def test_attach_maps_the_folder_as_it_is_or_refuses_in_one_line(tmp_path):
    reader = Images()
    cache = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    rank = DecodeCache.attach(str(cache.folder), cache.key, CROP)
    assert rank.folder == cache.folder and rank.writable and not rank.reused and rank.n == 6
    rank.fill(0, np.zeros((6, CROP, CROP, 3), np.uint8), np.zeros(6, np.int64), reader, PREP, 7, 3)
    assert cache.complete
    rank.close()
    cache.close()
    assert not held(cache.folder / "lock")
    rank = DecodeCache.attach(cache.folder, cache.key, CROP)
    assert not rank.writable and held(cache.folder / "lock")
    rank.close()
    with pytest.raises(SenetZooError) as e:
        DecodeCache.attach(cache.folder, {**cache.key, "num_images": 5}, CROP)
    assert str(e.value) == (f"{cache.folder}: decode cache not usable by this rank: "
                            "key.json missing or not this folder's key")
    with pytest.raises(SenetZooError) as e:
        DecodeCache.attach(cache.folder, cache.key, CROP + 1)
    assert str(e.value) == (f"{cache.folder}: decode cache not usable by this rank: "
                            "images.npy or status.npy unreadable or of the wrong shape")


# ------------------------------------------------------------------------------------------- no cache here

def fail_fallocate(code, text):
    def fallocate(fd, offset, length):
        raise OSError(code, text)
    return fallocate


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left on device"),
                                        (errno.EDQUOT, "Disk quota exceeded"), (errno.EFBIG, "File too large")])
def test_no_room_is_cache_unavailable_and_leaves_nothing(tmp_path, monkeypatch, code, text):
    monkeypatch.setattr(os, "posix_fallocate", fail_fallocate(code, text))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 40, 1 << 39, 3 << 29))
    reader = Images([(1, 1, 1)])
    reader.blobs, reader.sizes = [b"x"] * 1000, [1] * 1000  # never decoded
    fds = open_fds(tmp_path)
    with pytest.raises(CacheUnavailable) as e:
        DecodeCache.open(tmp_path, reader, Preprocessing("caffe", 256, 224), log=quiet)
    assert str(e.value) == f"no room for the crops of 1,000 images (0.14 GiB; 1.50 GiB free): {text}"
    assert os.listdir(tmp_path / "caffe-256-224") == [".lock"]
    assert open_fds(tmp_path) == fds


@pytest.mark.parametrize("code, text", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied"),
                                        (errno.EPERM, "Operation not permitted")])
def test_a_location_that_cannot_be_written_is_cache_unavailable(tmp_path, monkeypatch, code, text):
    monkeypatch.setattr(os, "posix_fallocate", fail_fallocate(code, text))
    with pytest.raises(CacheUnavailable) as e:
        DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert str(e.value) == f"cannot write there ({text})"
    assert os.listdir(base_of(tmp_path)) == [".lock"]


def test_another_failure_to_build_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "posix_fallocate", fail_fallocate(errno.EIO, "Input/output error"))
    with pytest.raises(SenetZooError) as e:
        DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert type(e.value) is SenetZooError
    assert str(e.value) == f"{base_of(tmp_path)}: cannot create the decode cache (Input/output error)"
    assert os.listdir(base_of(tmp_path)) == [".lock"]


def test_a_pointer_that_cannot_be_written_is_cache_unavailable(tmp_path, monkeypatch):
    def refuse(path, text):
        raise SenetZooError(Path(path).parent, "is not writable: cannot write the output here")

    monkeypatch.setattr(cache_mod, "atomic_write_text", refuse)
    fds = open_fds(tmp_path)
    with pytest.raises(CacheUnavailable) as e:
        DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert str(e.value) == "is not writable: cannot write the output here"
    assert open_fds(tmp_path) == fds
    # the folder was renamed into place before the pointer failed: an unreferenced folder, tidied later
    monkeypatch.undo()
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert [p.name for p in base_of(tmp_path).iterdir() if p.is_dir()] == [cache.folder.name]
    cache.close()


def test_a_root_that_is_a_file_is_one_line(tmp_path):
    root = tmp_path / "cache"
    root.write_text("a file\n")
    with pytest.raises(SenetZooError) as e:
        DecodeCache.open(root, Images(), PREP, log=quiet)
    assert str(e.value) == f"{root}: cannot create the decode cache (Not a directory)"


@pytest.mark.parametrize("code, text", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied"),
                                        (errno.EPERM, "Operation not permitted")])
def test_a_root_where_no_folder_can_be_made_is_cache_unavailable(tmp_path, monkeypatch, code, text):
    def refuse(self, *args, **kwargs):
        raise OSError(code, text)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(CacheUnavailable) as e:
        DecodeCache.open(tmp_path / "cache", Images(), PREP, log=quiet)
    assert str(e.value) == f"cannot make a folder in {tmp_path / 'cache'} ({text})"


def test_a_root_made_with_its_parents(tmp_path):
    cache = DecodeCache.open(tmp_path / "a" / "b", Images(), PREP, log=quiet)
    assert cache.folder.parent == tmp_path / "a" / "b" / "caffe-10-8"
    cache.close()
    cache = DecodeCache.open(tmp_path / "a" / "b", Images(), PREP, log=quiet)  # exists already: fine
    cache.close()


@pytest.mark.parametrize("pointers_first", [True, False])
def test_a_removed_folder_takes_its_pointer_whatever_order_the_folder_lists(tmp_path, monkeypatch, pointers_first):
    """Before: the pointer was read after its folder had been renamed away, so it never named it any more and
    stayed, dangling, when the listing gave it before its folder."""
    listed = cache_mod._entries
    monkeypatch.setattr(cache_mod, "_entries", lambda base: sorted(
        listed(base), key=lambda e: (e.name.endswith(".current") != pointers_first, e.name)))
    gone = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 2, mtime=5), PREP, log=quiet)
    gone.close()
    pointer = base_of(tmp_path) / f"{gone.folder.name[:16]}.current"
    assert pointer.exists()
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert not gone.folder.exists() and not pointer.exists()
    cache.close()


def test_no_room_for_even_the_temporary_folder(tmp_path, monkeypatch):
    made = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name.startswith("."):  # the build's temporary folder, not the cache's own
            raise OSError(errno.ENOSPC, "No space left on device")
        return made(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    fds = open_fds(tmp_path)
    with pytest.raises(CacheUnavailable) as e:
        DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert str(e.value).startswith("no room for the crops of 6 images (0.00 GiB; ")
    assert str(e.value).endswith(" free): No space left on device")
    assert os.listdir(base_of(tmp_path)) == [".lock"] and open_fds(tmp_path) == fds


def test_a_cache_made_but_not_opened_holds_nothing_and_maps_nothing(tmp_path):
    """Only ``open``/``attach`` map a folder (and record which files they mapped); a bare object knows nothing."""
    reader = Images()
    opened = DecodeCache.open(tmp_path, reader, PREP, log=quiet)
    opened.close()
    bare = DecodeCache(opened.folder, opened.key, CROP)
    assert bare.describe() == {"folder": str(opened.folder), "key": opened.key, "reused": False,
                               "stored_at_start": 0, "decoded": 6, "checked_images": [], "writable": False}
    for name in ("images", "status"):
        with pytest.raises(SenetZooError, match="was replaced while this run used it"):
            getattr(bare, name)
    bare.close()
    assert open_fds(tmp_path) == []


def test_describe_a_new_folder(tmp_path):
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert cache.describe() == {"folder": str(cache.folder), "key": cache_key(Images(), PREP), "reused": False,
                                "stored_at_start": 0, "decoded": 6, "checked_images": [], "writable": True}
    cache.close()


def test_a_held_folder_is_passed_over_and_the_tidy_goes_on(tmp_path, monkeypatch):
    held_first = lambda base: sorted(listed(base), key=lambda e: e.name != live.folder.name)  # noqa: E731
    listed = cache_mod._entries
    live = DecodeCache.open(tmp_path, Images([(9, 9, 9)] * 3), PREP, log=quiet)
    gone = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 2, mtime=5), PREP, log=quiet)
    gone.close()
    (base_of(tmp_path) / "key.json").write_text("{}")  # format 1's
    monkeypatch.setattr(cache_mod, "_entries", held_first)
    log = Log()
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=log)
    assert live.folder.is_dir() and not gone.folder.exists() and not (base_of(tmp_path) / "key.json").exists()
    assert len(log) == 2
    cache.close()
    live.close()


def test_a_location_this_run_cannot_write_is_not_tidied(tmp_path, monkeypatch):
    gone = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 2, mtime=5), PREP, log=quiet)
    other = DecodeCache.open(tmp_path, Images([(5, 5, 5)] * 3, mtime=5), PREP, log=quiet)
    other.close()
    gone.close()
    base = base_of(tmp_path)
    (base / "key.json").write_text("{}")
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: not (Path(path) == base and mode & os.W_OK))
    log = Log()
    cache = DecodeCache._current(base, gone.folder.name[:16], gone.key, CROP, log)
    cache._tidy(base, log)
    assert log == [] and gone.folder.is_dir() and other.folder.is_dir() and (base / "key.json").exists()
    cache.close()


def test_a_leftover_temporary_that_is_a_file_does_not_stop_the_run(tmp_path):
    base = base_of(tmp_path)
    base.mkdir(parents=True)
    (base / f".{'a' * 16}-{'b' * 8}.tmp-{dead_pid()}").write_text("not a folder")
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert cache.folder.is_dir()
    cache.close()


def test_files_gone_since_the_listing_do_not_stop_the_run(tmp_path, monkeypatch):
    """Someone removing the cache's files by hand while a run opens it: the tidy's listing names files that are
    gone when it comes to them."""
    base = base_of(tmp_path)
    base.mkdir(parents=True)
    stale = [base / f"{'e' * 16}.current", base / "images.npy", base / "key.json"]
    listed = cache_mod._entries

    def listing_then_removed(where):
        for path in stale:
            path.write_text("x")
        entries = listed(where)
        for path in stale:
            path.unlink()
        return entries

    monkeypatch.setattr(cache_mod, "_entries", listing_then_removed)
    cache = DecodeCache.open(tmp_path, Images(), PREP, log=quiet)
    assert cache.folder.is_dir()
    cache.close()
