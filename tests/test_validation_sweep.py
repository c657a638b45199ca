"""``validate --all --weights-dir OUT``: every converted model at every registry setting, resumable.

Two models (SE-BN-Inception and SE-ResNet-50: synthetic release caffemodels through ``convert``, as
``convert --all`` lays them out) on 4 of the 13 JPEGs of ``test_validation_run.py`` at the registry's 224,
sharing one ``--cache``, in real ``senet-zoo validate`` subprocesses: one record each, the summary table
and ``summary.json``, exit 1 unless every setting is REPRODUCED; killed with SIGTERM in its second model,
the rerun skips the first and resumes the second, ending with the uninterrupted run's records.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from senet_zoo import classes, registry
from senet_zoo.validation.record import NOT_REPRODUCED, REPRODUCED
from test_validation_run import flat, run_subprocess  # noqa: F401

from conftest import REPO

pytestmark = pytest.mark.slow
MODELS = ("se_bn_inception", "se_resnet50")
LIMIT = 4
RUN_FIELDS = {"created", "wall_time_s", "images_per_s", "command"}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """OUT/<name>/model.safetensors for the two models, converted from seeded synthetic caffemodels."""
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.convert import convert
    from senet_zoo.converters.release_layout import write_release_prototxt
    from senet_zoo.converters.synthetic import synthesize

    root = tmp_path_factory.mktemp("sweep-release")
    for seed, name in enumerate(MODELS, 5):
        ckpt = registry.get(name)
        prototxt = write_release_prototxt(ckpt.architecture, root / ckpt.prototxt)
        caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=seed), root / ckpt.caffemodel)
        convert(name, root / ckpt.caffemodel, root / "out" / name, prototxt, allow_unknown_hash=True)
    return root / "out"


def sweep_args(weights: Path, data: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["--all", "--weights-dir", str(weights), "--data", str(data), "--limit", str(LIMIT), "--device", "cpu",
            "--batch-size", "1", "--workers", "0", "--output-dir", str(out_dir), "--cache", str(out_dir / "cache"),
            "--no-progress", *extra]


def sweep(argv: list[str]) -> subprocess.CompletedProcess:
    # run_subprocess's torchrun-free path: `python -m senet_zoo validate ARGS`
    return run_subprocess(argv, timeout=600)


def record_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}-224-limit{LIMIT}.json"


def comparable(path: Path) -> dict:
    """A record without what differs between two runs of the same setting (times, where the files are)."""
    r = json.loads(path.read_text())
    for k in RUN_FIELDS:
        r.pop(k)
    r["data"].pop("decode_cache")
    r["run"].pop("resumed_from_image")
    r["numerics"]["conv_probe"].pop("seconds")
    return r


@pytest.fixture(scope="module")
def uninterrupted(weights_dir, flat, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sweep-once")
    return sweep(sweep_args(weights_dir, flat, out_dir)), out_dir


def test_one_record_per_setting_a_summary_table_and_exit_1(uninterrupted):
    r, out_dir = uninterrupted
    assert r.returncode == 1, r.stderr[-3000:]  # synthetic weights do not reproduce the published numbers
    assert r.stderr.strip() == ""
    assert "[1/2] se_bn_inception at 224" in r.stdout and "[2/2] se_resnet50 at 224" in r.stdout
    table = r.stdout[r.stdout.rindex("\nmodel ") + 1:]
    assert "0 of 2 REPRODUCED\n* not the published protocol" in table
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [(s["model"], s["img_size"], s["verdict"]) for s in summary] == [(m, 224, NOT_REPRODUCED) for m in MODELS]
    for s, name in zip(summary, MODELS):
        record = json.loads(record_path(out_dir, name).read_text())
        assert s["record"] == str(record_path(out_dir, name))
        assert record["model"] == name and record["img_size"] == 224 and record["verdict"] == NOT_REPRODUCED
        assert record["results"]["num_images"] == LIMIT and record["data"]["limit"] == LIMIT
        assert record["published"]["top1_err"] == registry.get(name).published_for(224).top1_err
        assert f"covers {LIMIT} images" in record["protocol"]["notes"][0]
        line = next(x for x in table.splitlines() if x.startswith(name))
        assert f"{record['results']['top1_err']:.2f}" in line and f"{record['published']['top1_err']:.2f}" in line
        assert line.endswith(f"{NOT_REPRODUCED} *") and s["matches_published_protocol"] is False  # 4 images
        # the record's command is one model's run, as a user would type it again
        assert "--all" not in record["command"] and "--weights-dir" not in record["command"]
        assert f"--model {name}" in record["command"]
    first, second = (json.loads(record_path(out_dir, n).read_text())["data"]["decode_cache"] for n in MODELS)
    assert first["folder"] == second["folder"] and Path(first["folder"]).parent.name == "caffe-256-224"
    assert not first["reused"] and second["reused"] and second["decoded"] == 0  # the second model's crops: read
    # the first model decodes (DataLoader workers fill the cache), the second slices the filled cache: on CUDA
    # the whole set in device memory, on the CPU the memory-mapped cache itself
    assert first["resident"] is None and second["resident"] == "memory-mapped files"
    assert "batches from the decode cache in memory-mapped files" in r.stdout.split("[2/2]")[1]


def test_a_sweep_killed_in_its_second_model_resumes_to_the_same_records(weights_dir, flat, uninterrupted, tmp_path):
    _, once = uninterrupted
    out_dir = tmp_path / "runs"
    argv = sweep_args(weights_dir, flat, out_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "senet_zoo", "validate", *argv], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = out_dir / f"se_resnet50-224-limit{LIMIT}.progress.npz"
    try:
        deadline = time.monotonic() + 300
        while not progress.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)  # in the second model's loop: one or more of its images done
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert stderr.strip() == "senet-zoo validate: terminated (SIGTERM)"
    assert "[2/2] se_resnet50 at 224" in stdout and "REPRODUCED" not in stdout.split("[2/2]")[1]
    first = record_path(out_dir, "se_bn_inception")
    assert first.is_file() and not record_path(out_dir, "se_resnet50").exists() and progress.is_file()
    with np.load(progress) as z:
        done = int(z["rows"])
    assert 1 <= done < LIMIT
    first_bytes, first_mtime = first.read_bytes(), first.stat().st_mtime_ns

    r = sweep(argv)
    assert r.returncode == 1, r.stderr[-3000:]
    assert f"{first}: already validated with these weights and images (NOT REPRODUCED)" in r.stdout
    assert f"resuming: {done} of {LIMIT} images done ({done} batches)" in r.stdout
    assert first.read_bytes() == first_bytes and first.stat().st_mtime_ns == first_mtime  # not run again
    assert json.loads(record_path(out_dir, "se_resnet50").read_text())["run"]["resumed_from_image"] == done
    for name in MODELS:
        assert comparable(record_path(out_dir, name)) == comparable(record_path(once, name)), name
        assert (record_path(out_dir, name).with_suffix(".npz").read_bytes()
                == record_path(once, name).with_suffix(".npz").read_bytes())
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [s["verdict"] for s in summary] == [NOT_REPRODUCED] * 2
    assert not list(out_dir.glob("*.progress.npz"))


def test_exit_0_only_when_every_setting_is_reproduced(weights_dir, flat, uninterrupted, tmp_path):
    """Labels = SE-ResNet-50's own top-1 (``--expect-agreement``): it alone is REPRODUCED (exit 0); with
    SE-BN-Inception beside it, whose predictions differ, the sweep exits 1."""
    _, once = uninterrupted
    with np.load(record_path(once, "se_resnet50").with_suffix(".npz")) as z:
        own = dict(zip(z["names"].tolist(), z["top5"][:, 0].tolist()))
    with np.load(record_path(once, "se_bn_inception").with_suffix(".npz")) as z:
        assert z["top5"][:, 0].tolist() != list(own.values())
    labels = tmp_path / "agree.txt"
    wnids = classes.sorted_wnids()
    labels.write_text("".join(f"{p.name} {wnids[own.get(p.name, 0)]}\n" for p in sorted(flat.iterdir())))
    only = tmp_path / "only"
    only.mkdir()
    (only / "se_resnet50").symlink_to(weights_dir / "se_resnet50", target_is_directory=True)
    out_dir = tmp_path / "runs"
    extra = ["--labels", str(labels), "--label-format", "wnid", "--expect-agreement", "its own predictions"]
    r = sweep(sweep_args(only, flat, out_dir, *extra))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 of 1 REPRODUCED" in r.stdout
    r = sweep(sweep_args(weights_dir, flat, out_dir, *extra))
    assert r.returncode == 1, r.stderr[-3000:]
    assert "1 of 2 REPRODUCED" in r.stdout and "already validated" in r.stdout  # SE-ResNet-50 not run again
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [(s["model"], s["verdict"]) for s in summary] == [("se_bn_inception", NOT_REPRODUCED),
                                                             ("se_resnet50", REPRODUCED)]
    # an option that changes what a record reports makes it another setting: run again, not reused
    r = sweep(sweep_args(only, flat, out_dir, *extra, "--skip-bad-images"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "already validated" not in r.stdout
    assert json.loads(record_path(out_dir, "se_resnet50").read_text())["run"]["skip_bad_images"] is True


def test_a_setting_whose_weights_changed_since_its_record_is_validated_again(weights_dir, flat, uninterrupted,
                                                                               tmp_path):
    """The records of a finished sweep, then SE-ResNet-50's model.safetensors replaced by other weights (one
    float of its classifier changed, bytes otherwise equal): the rerun skips SE-BN-Inception and validates
    SE-ResNet-50 again, and its new record holds the new file's sha256 (computed here)."""
    import hashlib
    import shutil

    _, once = uninterrupted
    out_dir = shutil.copytree(once, tmp_path / "runs")
    weights = shutil.copytree(weights_dir, tmp_path / "weights")
    path = weights / "se_resnet50" / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    offsets = json.loads(data[8:header])["last_linear.bias"]["data_offsets"]
    at = header + offsets[0]
    data[at:at + 4] = np.float32(np.frombuffer(data[at:at + 4], np.float32)[0] + 1.0).tobytes()
    path.write_bytes(bytes(data))
    new_sha = hashlib.sha256(bytes(data)).hexdigest()
    old_record = json.loads(record_path(out_dir, "se_resnet50").read_text())
    assert old_record["weights"]["sha256"] != new_sha

    r = sweep(sweep_args(weights, flat, out_dir))
    assert r.returncode == 1, r.stderr[-3000:]
    skipped = [line for line in r.stdout.splitlines() if "already validated" in line]
    assert len(skipped) == 1 and "se_bn_inception-224" in skipped[0], skipped
    record = json.loads(record_path(out_dir, "se_resnet50").read_text())
    assert record["weights"]["sha256"] == new_sha and record["created"] >= old_record["created"]
