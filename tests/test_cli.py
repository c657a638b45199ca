"""The command line as a user meets it: the demo, convert --all, verify, info."""
import json
import subprocess
import sys

from senet_zoo import registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.release_layout import write_release_prototxt
from senet_zoo.converters.synthetic import synthesize


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "senet_zoo", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_demo_runs_the_whole_pipeline(tmp_path):
    res = run_cli("demo", "--work-dir", tmp_path / "demo")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "-> EQUAL" in out and "verdict: REPRODUCED" in out and "identical outputs" in out
    staged = tmp_path / "demo" / "hub" / "se_resnet50"
    assert {"README.md", "config.json", "model.safetensors"} <= {p.name for p in staged.iterdir()}


def test_convert_all_finds_release_files_and_verifies(tmp_path):
    release = tmp_path / "release"
    for name, h5 in (("se_bn_inception", True), ("se_resnet50", False)):
        ckpt = registry.get(name)
        prototxt = write_release_prototxt(ckpt.architecture, release / ckpt.prototxt)
        net = synthesize(caffe_io.read_prototxt(prototxt), seed=2)
        if h5:  # Caffe's HDF5 snapshot format, found under its usual name
            caffe_io.write_caffemodel_h5(net, release / (ckpt.caffemodel + ".h5"))
        else:
            caffe_io.write_caffemodel(net, release / ckpt.caffemodel)
    res = run_cli("convert", "--all", "--release-dir", release, "--output-root", tmp_path / "out",
                  "--allow-unknown-hash", "--verify", "--num-images", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("-> EQUAL") == 2
    for name in ("se_bn_inception", "se_resnet50"):
        config = json.loads((tmp_path / "out" / name / "config.json").read_text())
        assert config["senet_zoo"]["model"] == name
    assert not (tmp_path / "out" / "senet154").exists()

    # verify on a user's images (real JPEGs of odd sizes), under the release's preprocessing
    import cv2
    import numpy as np

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(300, 450), (512, 260)]):
        image = cv2.resize(rng.uniform(0, 255, (6, 9, 3)).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photos / f"photo{i}.jpg"), image)
    res = run_cli("verify", "--model", "se_resnet50", "--caffemodel", release / "SE-ResNet-50.caffemodel",
                  "--weights", tmp_path / "out" / "se_resnet50", "--images", photos)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 images from" in res.stdout and "-> EQUAL" in res.stdout


def test_convert_all_without_release_files(tmp_path):
    res = run_cli("convert", "--all", "--release-dir", tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "SE-ResNet-50.caffemodel" in res.stderr


def test_info_prints_paper_comparison():
    res = run_cli("info", "se_resnet50")
    assert res.returncode == 0
    assert "28,088,024" in res.stdout and "3.86 G" in res.stdout and "paper" in res.stdout


def test_create_model_refuses_weights_of_another_model(tmp_path):
    import pytest

    from senet_zoo import create_model
    from senet_zoo.errors import SenetZooError
    from senet_zoo.converters.convert import convert

    ckpt = registry.get("se_bn_inception")
    prototxt = write_release_prototxt(ckpt.architecture, tmp_path / ckpt.prototxt)
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=3), tmp_path / ckpt.caffemodel)
    convert("se_bn_inception", tmp_path / ckpt.caffemodel, tmp_path / "out", allow_unknown_hash=True)
    with pytest.raises(SenetZooError, match="se_bn_inception"):
        create_model("se_resnet50", pretrained=tmp_path / "out")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(SenetZooError, match="safetensors"):
        create_model("se_resnet50", pretrained=tmp_path / "junk.safetensors")


def test_verify_exits_1_when_the_weights_differ_from_the_caffemodel(tmp_path):
    ckpt = registry.get("se_bn_inception")
    prototxt = write_release_prototxt(ckpt.architecture, tmp_path / ckpt.prototxt)
    for seed in (4, 5):
        caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=seed),
                                  tmp_path / f"seed{seed}.caffemodel")
    res = run_cli("convert", "--model", "se_bn_inception", "--caffemodel", tmp_path / "seed4.caffemodel",
                  "--prototxt", prototxt, "--output", tmp_path / "out", "--allow-unknown-hash")
    assert res.returncode == 0, res.stderr
    res = run_cli("verify", "--model", "se_bn_inception", "--caffemodel", tmp_path / "seed5.caffemodel",
                  "--prototxt", prototxt, "--weights", tmp_path / "out", "--num-images", "2")
    assert res.returncode == 1 and "-> DIFFERENT" in res.stdout, res.stdout + res.stderr
