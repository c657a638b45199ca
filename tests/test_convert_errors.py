"""Bad input to `senet-zoo convert`: one line naming the file and the problem, exit 2, no traceback, no output."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from senet_zoo import registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.release_layout import write_release_prototxt
from senet_zoo.converters.synthetic import synthesize


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Release-format files (official topology via our layout; these tests don't need ../shared)."""
    folder = tmp_path_factory.mktemp("release")
    files = {}
    for name in ("se_resnet50", "se_bn_inception"):
        ckpt = registry.get(name)
        prototxt = write_release_prototxt(ckpt.architecture, folder / ckpt.prototxt)
        net = synthesize(caffe_io.read_prototxt(prototxt), seed=1)
        caffemodel = folder / ckpt.caffemodel
        caffe_io.write_caffemodel(net, caffemodel)
        files[name] = (prototxt, caffemodel, net)
    return files


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "senet_zoo", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(res, *fragments):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])


def test_converts_and_refuses_unknown_hash_without_flag(release, tmp_path):
    prototxt, caffemodel, _ = release["se_resnet50"]
    out = tmp_path / "out"
    res = run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--output", out)
    assert_one_line_error(res, caffemodel, "--allow-unknown-hash", "sha256")
    assert not out.exists()
    res = run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--output", out,
                  "--allow-unknown-hash")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert "topology matches" in res.stdout  # the prototxt beside the caffemodel was found and checked


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.caffemodel"
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", missing, "--output",
                                  tmp_path / "out"), missing, "no such file")
    assert not (tmp_path / "out").exists()


def test_truncated_caffemodel(release, tmp_path):
    _, caffemodel, _ = release["se_resnet50"]
    cut = tmp_path / "cut.caffemodel"
    data = caffemodel.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", cut, "--output",
                                  tmp_path / "out", "--allow-unknown-hash"), cut)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40,
                                     b"\x80\x04\x95 pickle-like \x00" * 100, b""])
def test_not_a_caffe_file(tmp_path, content):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(content)
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", bad, "--output",
                                  tmp_path / "out", "--allow-unknown-hash"), bad)
    assert not (tmp_path / "out").exists()


def test_caffemodel_of_another_model(release, tmp_path):
    _, caffemodel, _ = release["se_bn_inception"]
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--prototxt",
                                  release["se_resnet50"][0], "--output", tmp_path / "out", "--allow-unknown-hash"),
                          caffemodel, "SE-ResNet-50", "looks like SE-BN-Inception")
    assert not (tmp_path / "out").exists()


def test_prototxt_of_another_model(release, tmp_path):
    prototxt, _, _ = release["se_bn_inception"]
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", release["se_resnet50"][1],
                                  "--prototxt", prototxt, "--output", tmp_path / "out", "--allow-unknown-hash"),
                          prototxt, "SE-ResNet-50")


def test_blob_shape_mismatch_names_layer_and_shapes(release, tmp_path):
    prototxt, _, net = release["se_resnet50"]
    layer = net.layer("conv3_2_3x3")
    original = layer.blobs[0]
    try:
        layer.blobs[0] = np.zeros((128, 128, 1, 1), np.float32)
        bad = tmp_path / "shape.caffemodel"
        caffe_io.write_caffemodel(net, bad)
    finally:
        layer.blobs[0] = original
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", bad, "--prototxt", prototxt,
                                  "--output", tmp_path / "out", "--allow-unknown-hash"),
                          bad, "conv3_2_3x3", "128x128x1x1", "128x128x3x3")


def test_left_over_blobs_are_an_error(release, tmp_path):
    prototxt, _, net = release["se_resnet50"]
    extra = caffe_io.CaffeLayer(name="extra_fc", type="InnerProduct", bottoms=["x"], tops=["y"],
                                blobs=[np.zeros((3, 4), np.float32)], proto=None)
    bigger = caffe_io.CaffeNet(name=net.name, layers=[*net.layers, extra], source=net.source,
                               input_shape=net.input_shape)
    bad = tmp_path / "extra.caffemodel"
    caffe_io.write_caffemodel(bigger, bad)
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", bad, "--prototxt", prototxt,
                                  "--output", tmp_path / "out", "--allow-unknown-hash"), bad, "extra_fc")


def test_unknown_layer_type_in_prototxt(release, tmp_path):
    prototxt, caffemodel, _ = release["se_resnet50"]
    bad = tmp_path / "bad.prototxt"
    bad.write_text(prototxt.read_text().replace('type: "Sigmoid"', 'type: "Swish"', 1))
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--prototxt", bad,
                                  "--output", tmp_path / "out", "--allow-unknown-hash"), bad, "conv2_1_prob", "Swish")


def test_failed_conversion_keeps_previous_output(release, tmp_path):
    prototxt, caffemodel, _ = release["se_resnet50"]
    out = tmp_path / "out"
    assert run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--output", out,
                   "--allow-unknown-hash").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(caffemodel.read_bytes()[:1000])
    assert run_cli("convert", "--model", "se_resnet50", "--caffemodel", bad, "--output", out,
                   "--allow-unknown-hash").returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_refuses_to_replace_a_folder_with_other_files(release, tmp_path):
    _, caffemodel, _ = release["se_resnet50"]
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert_one_line_error(run_cli("convert", "--model", "se_resnet50", "--caffemodel", caffemodel, "--output",
                                  precious, "--allow-unknown-hash"), precious, "other files")
    assert (precious / "thesis.tex").read_text() == "years of work"
