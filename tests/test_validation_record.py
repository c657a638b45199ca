"""The record's own facts, on hand-built inputs: its file names, its command, the predictions file and the
errors recomputed from it, JSON cleaning, the printed table, and the errors and intervals of metrics.py.
(The whole record from a real run: test_validation_run.py.)"""
import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation import record
from senet_zoo.validation.commands import add_arguments
from senet_zoo.validation.metrics import error_summary, load_real_labels, real_accuracy, topk_errors, wilson_interval

# four images: image 1 right at rank 0, image 2 at rank 1, image 3 not in the top 5, image 4 at rank 3: top-1
# wrong 3 of 4 (75%), top-5 wrong 1 of 4 (25%)
LABELS = np.array([1, 2, 3, 4])
TOP5 = np.array([[1, 0, 0, 0, 0], [0, 2, 0, 0, 0], [0, 0, 0, 0, 9], [7, 3, 2, 4, 0]])


def validate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.set_defaults(_entry="senet-zoo validate")
    return parser.parse_args(list(argv))


def test_default_output_and_sibling_names():
    assert record.default_output("se_resnet50", 224, "caffe", "fp32", None) == Path("runs/se_resnet50-224.json")
    assert record.default_output("senet154", 320, "pil", "bf16", 500) == \
        Path("runs/senet154-320-pil-bf16-limit500.json")
    assert record.sibling(Path("runs/a.json"), ".npz") == Path("runs/a.npz")
    assert record.sibling(Path("runs/a.json"), ".progress.npz") == Path("runs/a.progress.npz")
    assert record.sibling(Path("runs/a.rec"), ".npz") == Path("runs/a.rec.npz")


def test_exit_codes():
    assert [record.exit_code(v) for v in (record.REPRODUCED, record.NOT_REPRODUCED, record.NO_PUBLISHED)] == [0, 1, 0]


def test_command_line_repeats_every_option_that_changes_the_run():
    args = validate_args("--model", "se_resnet50", "--data", "/data/val", "--batch-size", "64", "--amp",
                         "--no-channels-last", "--limit", "5", "--output", "r.json", "--real-labels",
                         "--no-fold-bn", "--label-format", "wnid")
    assert record.command_line(args) == ("senet-zoo validate --model se_resnet50 --data /data/val --label-format "
                                         "wnid --batch-size 64 --amp --no-channels-last --limit 5 --output r.json "
                                         "--real-labels --no-fold-bn")
    args = validate_args("--model", "senet154", "--data", "my data", "--amp", "fp16", "--channels-last",
                         "--skip-bad-images", "--batch-size", "128", "--fold-bn")
    del args._entry  # a namespace built elsewhere (the demo, a sweep) without the entry point: the command's
    assert record.command_line(args, world_size=2) == (
        "torchrun --nproc_per_node=2 -m senet_zoo.validation --model senet154 --data 'my data' --amp fp16 "
        "--channels-last --skip-bad-images")  # defaults (batch 128, folding on) are left out
    assert record.command_line(args).startswith("senet-zoo validate --model senet154 ")
    args._entry = "python -m senet_zoo.validation"   # the module's own entry point names itself
    assert record.command_line(argparse.Namespace(model="senet154")) == "senet-zoo validate"  # no parser at all
    assert record.command_line(args).startswith("python -m senet_zoo.validation --model senet154 ")


def test_predictions_file_and_the_errors_recomputed_from_it(tmp_path):
    path = tmp_path / "p.npz"
    logits = np.arange(8, dtype=np.float64).reshape(4, 2)
    sha = record.write_predictions(path, ["a", "b", "c", "d"], LABELS.astype(np.int32), TOP5.ravel(), logits)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]             # nothing left beside it
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["labels", "logits", "names", "top5"]
        assert z["names"].tolist() == ["a", "b", "c", "d"] and z["names"].dtype.kind == "U"
        assert z["labels"].dtype == np.int64 and z["top5"].dtype == np.int64 and z["top5"].shape == (4, 5)
        assert z["logits"].dtype == np.float32 and z["logits"].tolist() == logits.tolist()
    loaded = record.load_predictions(path)
    assert loaded["top5"].tolist() == TOP5.tolist() and loaded["labels"].tolist() == [1, 2, 3, 4]
    assert record.recompute_metrics(path) == (75.0, 25.0, 4)
    # top-5 as the progress file keeps it (int16) is stored as documented: int64
    record.write_predictions(tmp_path / "q.npz", ["a"], np.array([1]), np.array([[1, 0, 0, 0, 0]], np.int16))
    q = record.load_predictions(tmp_path / "q.npz")
    assert sorted(q) == ["labels", "names", "top5"] and q["top5"].dtype == np.int64


@pytest.mark.parametrize("arrays, message", [
    ({"labels": np.zeros(3, np.int64), "top5": np.zeros((3, 4), np.int64)}, "top5 has shape (3, 4) for (3,) labels"),
    ({"labels": np.zeros(3, np.int64), "top5": np.zeros((3, 6), np.int64)}, "top5 has shape (3, 6) for (3,) labels"),
    ({"labels": np.zeros(3, np.int64), "top5": np.zeros((2, 5), np.int64)}, "top5 has shape (2, 5) for (3,) labels"),
    ({"labels": np.zeros((3, 1), np.int64), "top5": np.zeros((3, 5), np.int64)},
     "top5 has shape (3, 5) for (3, 1) labels"),
    ({"labels": np.zeros(3, np.int64), "top5": np.zeros(15, np.int64)}, "top5 has shape (15,) for (3,) labels"),
    ({"labels": np.zeros(0, np.int64), "top5": np.zeros((0, 5), np.int64)}, "no predictions"),
])
def test_recompute_refuses_predictions_of_the_wrong_shape(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as info:
        record.recompute_metrics(path)
    assert str(info.value) == message


def test_a_predictions_file_holding_pickled_objects_is_never_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, names=np.array(["a"]), labels=np.array([1]), top5=np.array([[1, 0, 0, 0, 0], None], dtype=object))
    for read in (record.recompute_metrics, record.load_predictions):
        with pytest.raises(ValueError, match="allow_pickle=False"):
            read(path)


def test_written_record_is_plain_json(tmp_path):
    path = tmp_path / "r.json"
    record.write_record(path, {"n": np.int64(3), "x": np.float32(0.5), "nan": float("nan"), "inf": float("inf"),
                               "t": (1, np.int32(2)), 5: {"deep": [np.float64(-math.inf)]}})
    text = path.read_text()
    assert text.endswith("}\n") and "\n  " in text                            # indented, one newline at the end
    record.write_record(path, {"n": 3, "m": [1]})
    assert path.read_text() == '{\n  "n": 3,\n  "m": [\n    1\n  ]\n}\n'
    assert json.loads(text) == {"n": 3, "x": 0.5, "nan": None, "inf": None, "t": [1, 2], "5": {"deep": [None]}}


RECORD = {"display_name": "SE-ResNet-50", "model": "se_resnet50", "img_size": 224,
          "preprocess": {"name": "caffe", "resize": 256, "crop": 224}, "precision": "fp32",
          "results": {"num_images": 50000, "num_bad_images": 0, "top1_err": 22.47, "top1_err_ci95": [22.1, 22.84],
                      "top5_err": 6.2, "top5_err_ci95": [5.99, 6.41]},
          "environment": {"device": "cuda:0", "world_size": 1},
          "published": {"top1_err": 22.37, "top5_err": 6.36, "source": "hujie-frank/SENet README"},
          "delta": {"top1_err": 0.1, "top5_err": -0.16}, "tolerance_pp": 0.1, "verdict": "NOT REPRODUCED",
          "protocol": {"notes": []}}


def test_printed_table_with_published_numbers():
    assert record.format_table(RECORD) == "\n".join([
        "SE-ResNet-50 (se_resnet50) at 224: caffe preprocessing (resize 256, crop 224), fp32, 50,000 images on "
        "cuda:0",
        "",
        "               ours             95% CI  published     diff  tolerance",
        "top-1 err     22.47   [ 22.10,  22.84]      22.37    +0.10      ±0.10  ok",
        "top-5 err      6.20   [  5.99,   6.41]       6.36    -0.16      ±0.10  OUT",
        "",
        "published: hujie-frank/SENet README",
        "verdict: NOT REPRODUCED"])


def test_verdict_in_one_line():
    assert record.verdict_line(RECORD, Path("runs/x.json")) == (
        "SE-ResNet-50: NOT REPRODUCED: top-1 err 22.47 (published 22.37), top-5 err 6.20 (published 6.36), "
        "tolerance 0.10 pp; exit 1 is this verdict, not a crash (the table is printed above; record: runs/x.json)")
    unpublished = dict(RECORD, published=None, verdict=record.NO_PUBLISHED)
    assert record.verdict_line(unpublished, Path("r.json")) == (
        "SE-ResNet-50: NO PUBLISHED NUMBERS: top-1 err 22.47, top-5 err 6.20, tolerance 0.10 pp; exit 0 is this "
        "verdict, not a crash (the table is printed above; record: r.json)")
    half = dict(RECORD, published={"top1_err": 22.37, "top5_err": None})
    assert "top-1 err 22.47 (published 22.37), top-5 err 6.20, " in record.verdict_line(half, Path("r.json"))


def test_printed_table_of_a_record_without_protocol_notes():
    rec = {k: v for k, v in RECORD.items() if k != "protocol"}
    assert record.format_table(rec).endswith("published: hujie-frank/SENet README\nverdict: NOT REPRODUCED")
    assert record.format_table(dict(rec, protocol={})) == record.format_table(rec)


def test_printed_table_without_published_numbers_with_notes_and_real():
    rec = dict(RECORD, published=None, delta=None, verdict="NO PUBLISHED NUMBERS",
               environment={"device": "cpu", "world_size": 2}, protocol={"notes": ["3 unreadable image(s) skipped"]},
               results=dict(RECORD["results"], num_bad_images=3,
                            real={"top1_err": 17.5, "top5_err": 4.25, "num_images": 49000}))
    assert record.format_table(rec) == "\n".join([
        "SE-ResNet-50 (se_resnet50) at 224: caffe preprocessing (resize 256, crop 224), fp32, 50,000 images, "
        "3 bad skipped on cpu x2",
        "",
        "               ours             95% CI  published     diff  tolerance",
        "top-1 err     22.47   [ 22.10,  22.84]          -        -          -",
        "top-5 err      6.20   [  5.99,   6.41]          -        -          -",
        "ReaL err      17.50  (top-5 4.25; 49,000 images with ReaL labels)",
        "",
        "note: 3 unreadable image(s) skipped",
        "verdict: NO PUBLISHED NUMBERS"])


# ------------------------------------------------------------------------------------------------- metrics

def test_topk_errors_and_their_summary_by_hand():
    assert topk_errors(TOP5, LABELS) == (3, 1, 4)
    assert topk_errors(np.c_[TOP5, np.full(4, 3)], LABELS) == (3, 1, 4)    # a 6th column is not a 6th guess
    summary = error_summary(TOP5, LABELS)
    assert summary["top1_err"] == 75.0 and summary["top5_err"] == 25.0
    assert summary["top1_wrong"] == 3 and summary["top5_wrong"] == 1
    assert summary["top1_err_ci95"] == list(wilson_interval(3, 4))
    assert summary["top5_err_ci95"] == list(wilson_interval(1, 4))
    two = error_summary(TOP5[[2, 2, 0]], LABELS[[2, 2, 0]])     # image 3 twice and image 1: 2 of 3 wrong
    assert two["top1_err"] == pytest.approx(200 / 3) and two["top5_err"] == pytest.approx(200 / 3)
    empty = error_summary(np.zeros((0, 5), np.int64), np.zeros(0, np.int64))
    assert math.isnan(empty["top1_err"]) and math.isnan(empty["top5_err"]) and empty["top1_err_ci95"] == [0, 100]
    for top5, labels in ((TOP5[:, :4], LABELS), (TOP5, LABELS[:3]), (TOP5.ravel(), LABELS)):
        with pytest.raises(ValueError, match="top5 has shape"):
            topk_errors(top5, labels)


def test_wilson_interval_by_hand():
    # p = 1/4, z = 1.959964: centre (0.25 + z²/8) / (1 + z²/4) = 0.4218..., half-width 0.2993...
    lo, hi = wilson_interval(1, 4)
    assert abs(lo - 4.5587) < 1e-3 and abs(hi - 69.9358) < 1e-3
    assert wilson_interval(0, 0) == (0.0, 100.0) and wilson_interval(3, -1) == (0.0, 100.0)
    lo, hi = wilson_interval(1, 1)               # p = 1: centre 0.6033, half-width 0.3967
    assert abs(lo - 20.654) < 1e-3 and hi == 100.0
    # the bounds stay within [0, 100] where float rounding would cross them (1.0000000000000002, -1.4e-17)
    assert wilson_interval(16, 16)[1] == 100.0 and wilson_interval(0, 21)[0] == 0.0
    lo, hi = wilson_interval(1, 4, z=1.0)        # centre 0.3, half-width sqrt(3/64 + 1/64) / 1.25 = 0.2
    assert abs(lo - 10.0) < 1e-9 and abs(hi - 50.0) < 1e-9


def test_real_accuracy_by_hand():
    names = [f"sub/ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3, 4)]
    real = [[1, 5], [], [8], [4]]      # image 2 has none; image 3's is not guessed; image 4's is its 4th guess
    got = real_accuracy(names, TOP5, real, "hand")
    assert got["num_images"] == 3 and got["num_without_real_labels"] == 1 and got["source"] == "hand"
    assert got["top1_acc"] == pytest.approx(100 / 3) and got["top5_acc"] == pytest.approx(200 / 3)
    assert got["top1_err"] == pytest.approx(200 / 3) and got["top5_err"] == pytest.approx(100 / 3)
    nothing = real_accuracy(names[1:2], TOP5[1:2], real, "hand")
    assert math.isnan(nothing["top1_acc"]) and nothing["num_without_real_labels"] == 1
    six = real_accuracy(names[3:], np.array([[7, 3, 2, 0, 1, 4]]), real, "hand")   # a 6th column is no guess
    assert six["top5_acc"] == 0.0 and six["num_images"] == 1
    for bad in ("ILSVRC2012_val_00000005.JPEG", "ILSVRC2012_val_00000000.JPEG", "photo.jpg"):
        with pytest.raises(SenetZooError) as info:
            real_accuracy([bad], TOP5[:1], real, "hand")
        assert str(info.value) == (f"{bad}: --real-labels needs ILSVRC2012 validation images "
                                   "(ILSVRC2012_val_XXXXXXXX.JPEG)")


def test_real_labels_from_a_file_and_their_mistakes(tmp_path):
    good = tmp_path / "real.json"
    good.write_text("[[1, 5], [], [8]]")
    assert load_real_labels(good) == ([[1, 5], [], [8]], str(good))
    missing = tmp_path / "missing.json"
    cases = {missing: "cannot read ReaL labels (No such file or directory)"}
    for name, text in (("broken.json", "[[1, "), ("dict.json", '{"a": [1]}'), ("flat.json", "[1, 2]")):
        (tmp_path / name).write_text(text)
        cases[tmp_path / name] = ("not valid JSON (Expecting value: line 1 column 6 (char 5))" if name == "broken.json"
                                  else "expected real.json: a list of label lists, one per validation image")
    for path, message in cases.items():
        with pytest.raises(SenetZooError) as info:
            load_real_labels(path)
        assert str(info.value) == f"{path}: {message}"


def test_real_labels_default_to_the_copy_timm_ships(monkeypatch):
    real, source = load_real_labels(None)
    assert len(real) == 50_000 and real[:2] == [[], [970, 795]]   # image 1 has no ReaL label
    assert source == ("timm/data/_info/imagenet_real_labels.json (google-research/reassessed-imagenet "
                      "real.json)")

    def no_timm(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr("importlib.resources.files", no_timm)
    with pytest.raises(SenetZooError) as info:
        load_real_labels(None)
    assert str(info.value) == ("--real-labels without FILE uses the copy of real.json that timm ships, and timm "
                               "is not installed: pass --real-labels real.json")
