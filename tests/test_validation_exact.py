"""Exact fp32 and its evidence: refusal when torch reports reduced precision, the record's convolution probe,
and numbers that do not depend on the batch size or the process count.

Real ``senet-zoo validate`` runs (converted synthetic SE-ResNet-50, the 13 JPEGs of ``test_validation_run.py``
at ``--img-size 64``). Reduced precision comes from where it would in real life: code that ran before the
evaluation (a wrapper setting oneDNN's TF32 mode, which ``set_numerics`` does not own) or something that
flips the TF32 flags after ``set_numerics`` (``evaluate`` called with them on).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from senet_zoo import create_model
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import numerics
from senet_zoo.validation.data import load_eval_set
from senet_zoo.validation.distributed import Dist
from senet_zoo.validation.evaluate import EvalOptions, evaluate
from senet_zoo.images.preprocess import Preprocessing
from test_validation_run import (N_IMAGES, RESIZE, SIZE, common, flat, load, release, run_subprocess,  # noqa: F401
                                 val_name, validate)

from conftest import REPO

pytestmark = pytest.mark.slow

# What user code run before ``validate`` may do: oneDNN's fp32 convolutions in TF32 (on CPUs that have it).
WRAPPED = """
import sys, torch
torch.backends.mkldnn.conv.fp32_precision = "tf32"
torch.backends.cudnn.allow_tf32 = True            # these three set_numerics owns: it turns them off again
torch.backends.cuda.matmul.allow_tf32 = True
torch.set_float32_matmul_precision("medium")
from senet_zoo import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def wrapped(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", WRAPPED, "validate", *argv], env=env, capture_output=True,
                          text=True, timeout=240, cwd=REPO)


@pytest.fixture(autouse=True)
def flags_restored():
    """This process's precision flags as the tests found them (the in-process runs change them)."""
    b = torch.backends
    saved = (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark,
             torch.get_float32_matmul_precision())
    yield
    b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark = saved[:4]
    torch.set_float32_matmul_precision(saved[4])


def test_exact_mode_refuses_reduced_precision_in_one_line_and_amp_runs(release, flat, tmp_path):
    out = tmp_path / "exact.json"
    r = wrapped(common(release, flat, out))
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("senet-zoo validate: error: exact fp32 evaluation refused: torch reports "
                               "mkldnn.conv.fp32_precision=tf32 after senet-zoo set exact fp32")
    assert "allow_tf32" not in lines[0] and "--amp" in lines[0]
    assert not out.exists() and not out.with_suffix(".npz").exists()
    assert not list(tmp_path.glob("*progress*"))

    amp = tmp_path / "amp.json"
    r = wrapped(common(release, flat, amp, "--amp"))
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads(amp.read_text())
    assert record["precision"] == "bf16" and record["run"]["weights_dtype"] == "bfloat16"  # cast once
    assert record["numerics"]["flags_before_loop"]["mkldnn.conv.fp32_precision"] == "tf32"
    assert record["numerics"]["conv_probe"]["conv_rel_err"] > 1e-4  # bf16 autocast: about 1e-2 or 1e-3


@pytest.fixture(scope="module")
def exact_bs8(release, flat, tmp_path_factory):
    """An exact run in batches of 8 (the last one: 5 images and 3 padding rows), with logits."""
    out = tmp_path_factory.mktemp("exact") / "bs8.json"
    assert validate(common(release, flat, out, "--batch-size", "8", "--save-logits")) == 0
    return out


def test_exact_record_holds_the_flags_and_a_float32_sized_probe_error(exact_bs8):
    record = json.loads(exact_bs8.read_text())
    flags = record["numerics"]["flags_before_loop"]
    assert flags["cuda.matmul.allow_tf32"] is False and flags["cudnn.allow_tf32"] is False
    assert flags["float32_matmul_precision"] == "highest" and numerics.not_fp32(flags) == []
    probe = record["numerics"]["conv_probe"]
    assert 1e-9 < probe["conv_rel_err"] < 1e-5, probe   # float32 accumulation of 2,304 products: ~1e-6
    assert probe["repetitions"] >= 1 and "float64" in probe["shape"]
    env = record["environment"]
    assert env["tf32"] is False and env["cudnn_deterministic"] is True


def test_tf32_switched_on_after_set_numerics_is_refused_before_the_loop(release, flat):
    model = create_model("se_resnet50", pretrained=release[2]).eval()
    evalset = load_eval_set(str(flat))
    prep = Preprocessing("caffe", RESIZE, SIZE)
    opts = EvalOptions(device=torch.device("cpu"), batch_size=4, workers=0, show_progress=False)
    numerics.set_numerics("fp32")
    for flag in ("cuda.matmul.allow_tf32", "cudnn.allow_tf32"):
        numerics.set_numerics("fp32")
        obj = torch.backends.cuda.matmul if flag.startswith("cuda") else torch.backends.cudnn
        obj.allow_tf32 = True
        with pytest.raises(SenetZooError, match=rf"refused: torch reports {flag}=True[^;]* just before the loop"):
            evaluate(model, evalset, prep, [0.0] * 3, [1 / 255] * 3, opts, Dist(), log=lambda *_: None)
    numerics.set_numerics("fp32")
    torch.set_float32_matmul_precision("high")
    with pytest.raises(SenetZooError, match="float32_matmul_precision=high"):
        evaluate(model, evalset, prep, [0.0] * 3, [1 / 255] * 3, opts, Dist(), log=lambda *_: None)


def test_padding_makes_an_image_independent_of_where_the_set_ends(release, flat, exact_bs8, tmp_path):
    """13 images in batches of 8 (the last: 5 images and 3 padding rows) give the same logits, bit for bit,
    as 16 images whose last batch is full; batches of 3 give the same predictions (the logits then differ
    by float32 rounding only: oneDNN blocks the arithmetic by batch size)."""
    more = tmp_path / "sixteen"
    shutil.copytree(flat, more)
    for i, src in enumerate(sorted(flat.iterdir())[:3], N_IMAGES + 1):
        shutil.copy(src, more / val_name(i))
    runs = {"bs8": exact_bs8}
    for tag, data, bs in (("bs3", flat, 3), ("bs8-16", more, 8)):
        runs[tag] = tmp_path / f"{tag}.json"
        assert validate(common(release, data, runs[tag], "--batch-size", str(bs), "--save-logits")) == 0
    (r3, p3), (r8, p8), (_, p16) = load(runs["bs3"]), load(runs["bs8"]), load(runs["bs8-16"])
    assert r3["run"]["batch_size"] == 3 and r8["run"]["batch_size"] == 8 and len(p16["names"]) == 16
    np.testing.assert_array_equal(p8["names"], p16["names"][:N_IMAGES])
    np.testing.assert_array_equal(p8["logits"], p16["logits"][:N_IMAGES])
    for key in ("names", "labels", "top5"):
        np.testing.assert_array_equal(p3[key], p8[key])
    assert r3["results"] == r8["results"]
    assert np.abs(p3["logits"] - p8["logits"]).max() <= 1e-5 * p8["logits"].std()


def test_two_processes_give_one_process_logits_bit_for_bit(release, flat, tmp_path):
    """torchrun (2 ranks, gloo) against one process, both with one thread per process as torchrun sets it:
    the same batches through the same kernels, so the same logits to the bit (test_validation_run.py holds
    a multi-threaded single process to the predictions and float rounding)."""
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    r = run_subprocess(common(release, flat, one, "--save-logits"), {"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_subprocess(common(release, flat, two, "--save-logits"), {"OMP_NUM_THREADS": "1"}, torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    (r1, p1), (r2, p2) = load(one), load(two)
    assert r1["environment"]["world_size"] == 1 and r2["environment"]["world_size"] == 2
    for key in ("names", "labels", "top5", "logits"):
        np.testing.assert_array_equal(p1[key], p2[key])
    assert r1["results"] == r2["results"]


def test_a_set_smaller_than_one_batch_is_one_batch_of_exactly_its_images(release, flat, tmp_path):
    """13 images with --batch-size 100 run as one batch of 13, not 13 images and 87 padding rows (3 images
    padded to 128 cost 2.5 GB and 3.5x the time of batch 8 on the CPU): the record says batch 13, and the
    logits are those of --batch-size 13, bit for bit. Sets of at least one batch keep their padding (above)."""
    runs = {}
    for bs in ("100", "13"):
        runs[bs] = tmp_path / f"bs{bs}.json"
        assert validate(common(release, flat, runs[bs], "--batch-size", bs, "--save-logits")) == 0
    (r100, p100), (r13, p13) = load(runs["100"]), load(runs["13"])
    assert r100["run"]["batch_size"] == 13 == r13["run"]["batch_size"]
    assert "--batch-size 100" in r100["command"]
    for key in ("names", "top5", "logits"):
        np.testing.assert_array_equal(p100[key], p13[key])
