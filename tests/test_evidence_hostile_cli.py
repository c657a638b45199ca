"""Hostile inputs of issue 7 through the real CLI, as a user meets them: a subprocess per case, exit 2, exactly
one line on stderr naming the file, no traceback, nothing left behind, peak memory bounded; SIGTERM while
``convert`` saves; ``validate`` leaving no progress file. The readers themselves: tests/test_evidence_hostile.py."""
import dataclasses
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from senet_zoo.converters import caffe_io

from support.evidence import (HOSTILE_LABELS, assert_one_line_error, empty_layer_records,
                              interleaved_nonpacked_caffemodel, run_cli, seeded_release, sparse_hdf5,
                              v1_caffemodel_with_name)

pytestmark = pytest.mark.slow

# Peak RSS of a child includes this process's at the fork (Linux keeps the high-water mark across exec), so
# the bound is relative to it: the old reader needed 2.9 GB (sparse HDF5) and 3.9-5.9 GB (empty records).
CHILD_MEMORY_BOUND_MB = 1500


def own_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    return seeded_release("se_resnet50", tmp_path_factory.mktemp("r50"), seed=3)


@pytest.fixture(scope="module")
def weights(r50, tmp_path_factory):
    from senet_zoo.converters.convert import convert

    out = tmp_path_factory.mktemp("weights") / "se_resnet50"
    convert("se_resnet50", r50[1], out, allow_unknown_hash=True)
    return out


def convert_cli(caffemodel, out, *extra):
    return run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--output", out,
                   "--allow-unknown-hash", *extra)


def with_blob(net, layer_name, index, array):
    layers = []
    for layer in net.layers:
        if layer.name == layer_name:
            blobs = list(layer.blobs)
            if array is None:
                del blobs[index]
            else:
                blobs[index] = array
            layer = dataclasses.replace(layer, blobs=blobs)
        layers.append(layer)
    return dataclasses.replace(net, layers=layers)


# ------------------------------------------------------------------------------------------------ convert

def hostile_caffemodel(case, folder: Path, r50) -> tuple[Path, list[str]]:
    """(file, fragments its one-line refusal must hold)."""
    prototxt, _, net = r50
    if case == "interleaved non-packed records":
        return interleaved_nonpacked_caffemodel(folder / "i.caffemodel"), ["conv"]
    if case == "9 MB of empty layer records":
        return empty_layer_records(folder / "e.caffemodel"), [f"more than {caffe_io.MAX_LAYERS} layer records"]
    if case == "sparse 3 GB HDF5 dataset":
        return sparse_hdf5(folder / "s.caffemodel.h5"), ["declares 750000000 values"]
    if case == "non-UTF-8 V1 layer name":
        return v1_caffemodel_with_name(folder / "v1.caffemodel", b"conv\xff1"), ["not UTF-8 text"]
    if case == "0-d HDF5 blob":
        path = folder / "zero_d.caffemodel.h5"
        caffe_io.write_caffemodel_h5(with_blob(net, "conv1/7x7_s2/bn", 2, np.array(1.0, np.float32)), path)
        return path, ["'conv1/7x7_s2/bn' blob 2", "scalar"]
    bad = {"1-D conv weight": ("conv2_1_3x3", 0, np.zeros(64 * 64 * 9, np.float32)),
           "empty BatchNorm scale factor": ("conv1/7x7_s2/bn", 2, np.zeros(0, np.float32)),
           "SE conv without bias": ("conv2_1_1x1_down", 1, None)}[case]
    path = folder / "shape.caffemodel"
    caffe_io.write_caffemodel(with_blob(net, *bad), path)
    return path, [f"'{bad[0]}'"]


@pytest.mark.parametrize("case", ["interleaved non-packed records", "9 MB of empty layer records",
                                  "sparse 3 GB HDF5 dataset", "non-UTF-8 V1 layer name", "0-d HDF5 blob",
                                  "1-D conv weight", "empty BatchNorm scale factor", "SE conv without bias"])
def test_hostile_caffemodels_are_one_line_through_convert(r50, tmp_path, case):
    (tmp_path / "in").mkdir()
    path, fragments = hostile_caffemodel(case, tmp_path / "in", r50)
    # the release's prototxt beside it is not needed: every case is refused from the caffemodel alone
    start = time.perf_counter()
    res = convert_cli(path, tmp_path / "out" / "se_resnet50")
    seconds = time.perf_counter() - start
    assert_one_line_error(res, path, *fragments)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert seconds < 120  # was over 5 minutes (interleaved) and 36 s (empty records)
    assert res.peak_rss_mb < own_peak_mb() + CHILD_MEMORY_BOUND_MB, res.peak_rss_mb


def test_empty_layer_records_up_to_the_limit_are_read_quickly(tmp_path):
    path = empty_layer_records(tmp_path / "empty.caffemodel", size=3 * caffe_io.MAX_LAYERS)
    start = time.perf_counter()
    assert len(caffe_io.read_weights(path).layers) == caffe_io.MAX_LAYERS
    assert time.perf_counter() - start < 60  # each layer record is ~30 us of protobuf


def test_sigterm_while_convert_saves(r50, tmp_path):
    """SIGTERM sent while the output is being written (its temporary folder exists): exit 143, one line,
    no output; the next run into the same folder leaves only its output."""
    _, caffemodel, _ = r50
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep
           + os.environ.get("PYTHONPATH", "")}
    for attempt in range(5):  # the window is a few tenths of a second: retry if the run was faster than us
        proc = subprocess.Popen([sys.executable, "-m", "senet_zoo", "convert", "--model", "se_resnet50",
                                 "--caffemodel", str(caffemodel), "--output", str(out), "--allow-unknown-hash"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        signalled = False
        while proc.poll() is None:
            temps = [n for n in os.listdir(tmp_path) if n.startswith(".out.tmp-")]
            if temps and any(os.scandir(tmp_path / temps[0])):  # a file is being written into it
                proc.send_signal(signal.SIGTERM)
                signalled = True
                break
            time.sleep(0.001)
        stdout, stderr = proc.communicate(timeout=120)
        if signalled:
            break
        assert proc.returncode == 0, stderr
        import shutil

        shutil.rmtree(out)
    else:
        pytest.skip("the conversion always finished before the signal could be sent")
    assert proc.returncode == 143, (proc.returncode, stderr)
    lines = stderr.strip().splitlines()
    assert lines == ["senet-zoo convert: terminated (SIGTERM)"], stderr
    assert not out.exists()
    res = convert_cli(caffemodel, out)
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("kind", ["symlink", "dangling"])
def test_symlinked_output_is_one_line_through_convert(r50, tmp_path, kind):
    _, caffemodel, _ = r50
    target = tmp_path / "real"
    if kind == "symlink":
        target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert_one_line_error(convert_cli(caffemodel, link), link, "symbolic link")
    assert sorted(os.listdir(tmp_path)) == sorted(["link"] + (["real"] if kind == "symlink" else []))
    assert kind == "dangling" or list(target.iterdir()) == []


# ----------------------------------------------------------------------------------------------- validate

def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("images") / "val"
    root.mkdir()
    for i in range(1, 4):
        cv2.imwrite(str(root / val_name(i)), np.full((80, 90, 3), 40 * i, np.uint8))
    return root


def validate_cli(weights, data, output, *extra):
    return run_cli("validate", "--model", "se_resnet50", "--weights", weights, "--data", data, "--img-size", "64",
                   "--device", "cpu", "--batch-size", "2", "--workers", "0", "--output", output, "--no-progress",
                   *extra)


def test_a_run_whose_images_are_all_bad_leaves_no_progress_file(weights, tmp_path):
    data = tmp_path / "val"
    data.mkdir()
    for i in range(1, 4):
        (data / val_name(i)).write_bytes(b"not a JPEG at all " * i)
    out = tmp_path / "runs" / "r.json"
    assert_one_line_error(validate_cli(weights, data, out, "--skip-bad-images"), data, "no image could be evaluated")
    assert list(out.parent.iterdir()) == []


def test_hostile_images_are_skipped_bad_images_not_the_end_of_the_run(weights, images, tmp_path):
    """Over the pixel limit (a 65500x65500 JPEG header, a 100000x1 PNG that would resize to 19.6 GB):
    each is one bad image under --skip-bad-images; the run completes and lists them."""
    import json
    import shutil

    from support.evidence import black_png, jpeg_claiming

    data = tmp_path / "val"
    shutil.copytree(images, data)
    (data / val_name(4)).write_bytes(jpeg_claiming(65500, 65500))
    (data / val_name(5)).write_bytes(black_png(100000, 1))
    out = tmp_path / "runs" / "r.json"
    res = validate_cli(weights, data, out, "--skip-bad-images")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    results = json.loads(out.read_text())["results"]
    assert sorted(results["bad_images"]) == [val_name(4), val_name(5)] and results["num_images"] == 3
    assert not (out.parent / "r.progress.npz").exists()


def test_a_forged_progress_file_is_one_line_and_kept(weights, images, tmp_path):
    out = tmp_path / "runs" / "r.json"
    out.parent.mkdir()
    forged = out.parent / "r.progress.npz"
    np.savez(forged, key=np.array("[" * 20_000), done_batches=np.int64(10 ** 9), rows=np.int64(-5),
             top5=np.zeros((3, 2)), status=np.zeros(1), elapsed=np.float64(0), logits_rows=np.int64(0))
    before = forged.read_bytes()
    assert_one_line_error(validate_cli(weights, images, out, "--resume"), forged, "unreadable progress file",
                          "delete it")
    assert forged.read_bytes() == before and sorted(os.listdir(out.parent)) == ["r.progress.npz"]


@pytest.mark.parametrize("filename", ["deep.json", "digits5000.txt", "fullwidth.txt"])
def test_hostile_label_files_are_one_line_through_validate(weights, images, tmp_path, filename):
    labels = tmp_path / filename
    labels.write_text(HOSTILE_LABELS[filename], encoding="utf-8")
    out = tmp_path / "runs" / "r.json"
    res = validate_cli(weights, images, out, "--labels", labels, "--label-format",
                       "json" if filename.endswith(".json") else "caffe")
    assert_one_line_error(res, labels)
    assert not out.exists() and not (out.parent / "r.progress.npz").exists()


def test_output_below_a_file_fails_before_inference(weights, images, tmp_path):
    """The same early check as a read-only folder, in a form that holds for root too."""
    (tmp_path / "file").write_text("x")
    res = validate_cli(weights, images, tmp_path / "file" / "r.json")
    assert_one_line_error(res, tmp_path / "file", "cannot write the record here")
    assert "images (" not in res.stdout  # the run's first line, printed just before inference starts


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders, so nothing would be refused")
def test_output_in_a_read_only_folder_fails_before_inference(weights, images, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = validate_cli(weights, images, ro / "r.json")
    finally:
        ro.chmod(0o755)
    assert_one_line_error(res, ro, "cannot write the record here")
    assert "images (" not in res.stdout  # the run's first line, printed just before inference starts


# -------------------------------------------------------------------------------------- push, list, report

DEEP = "[" * 20_000 + "]" * 20_000


@pytest.mark.parametrize("command", ["list", "report", "push"])
def test_records_with_deep_json_are_one_line(weights, tmp_path, command):
    record = tmp_path / "deep.json"
    record.write_text(DEEP)
    args = {"list": ["list"], "report": ["report", "--no-chart", "--output", tmp_path / "r.md"],
            "push": ["push", "--model", "se_resnet50", "--weights", weights, "--repo-id", "me/x",
                     "--dry-run", tmp_path / "hub"]}[command]
    res = run_cli(*args, "--record", record)
    assert_one_line_error(res, record, "nested more than 64 levels deep")
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "hub").exists()


@pytest.mark.parametrize("header", [DEEP.encode(), b'{"x": {"data_offsets": [0, ' + b"9" * 5000 + b"]}}"])
def test_safetensors_headers_with_deep_or_huge_json_are_one_line_in_push(weights, tmp_path, header):
    import shutil

    forged = tmp_path / "se_resnet50"
    shutil.copytree(weights, forged)
    (forged / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    res = run_cli("push", "--model", "se_resnet50", "--weights", forged, "--repo-id", "me/x",
                  "--dry-run", tmp_path / "hub")
    assert_one_line_error(res, forged / "model.safetensors", "not a safetensors file")
    assert not (tmp_path / "hub").exists()
    res = run_cli("list", "--weights-root", tmp_path, "--records", tmp_path)
    assert res.returncode == 0 and "invalid (not a safetensors file" in res.stdout, res.stdout + res.stderr
