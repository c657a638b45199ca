"""Converted models equal an independent Caffe runtime (OpenCV dnn, Axpy corrected) on the official topologies.

For each of the seven official prototxts: seeded synthetic weights with exactly Caffe's blob shapes, written as
a real binary caffemodel; OpenCV runs the prototxt + caffemodel; our converter writes safetensors; the loaded
model must give the same logits (max |Δ| ≤ 5e-3 · std of the reference logits, class permutation applied)
and the same top-1 on several inputs.
"""
import json

import numpy as np
import pytest
import torch

from senet_zoo import create_model, registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.convert import convert
from senet_zoo.converters.opencv_reference import OpenCVCaffeNet
from senet_zoo.converters.synthetic import synthesize
from senet_zoo.converters.verify import TOLERANCE, compare, generated_images
from conftest import PROTOTXTS, release_file

NUM_IMAGES = 4


@pytest.fixture(scope="module")
def images():
    return generated_images(NUM_IMAGES, seed=123)


def _release(name, tmp_path, seed=0):
    prototxt = release_file(PROTOTXTS[name])
    net = synthesize(caffe_io.read_prototxt(prototxt), seed=seed)
    caffemodel = tmp_path / registry.get(name).caffemodel
    caffe_io.write_caffemodel(net, caffemodel)
    return prototxt, net, caffemodel


@pytest.mark.parametrize("name", list(PROTOTXTS))
def test_converted_model_equals_opencv_caffe_runtime(name, tmp_path, images):
    prototxt, net, caffemodel = _release(name, tmp_path)
    out = tmp_path / "out"
    convert(name, caffemodel, out, prototxt, allow_unknown_hash=True)
    del net
    model = create_model(name, pretrained=out)
    agreement = compare(model, OpenCVCaffeNet(prototxt, caffemodel), images)
    print(f"{name}: {agreement.summary()}")
    assert agreement.ratio <= TOLERANCE, agreement.summary()
    assert agreement.top1_agree == NUM_IMAGES, agreement.summary()
    config = json.loads((out / "config.json").read_text())
    assert config["senet_zoo"]["model"] == name and config["num_classes"] == 1000


def test_hdf5_and_legacy_v1_caffemodels_convert_to_identical_weights(tmp_path):
    from safetensors.numpy import load_file

    name = "se_bn_inception"
    prototxt, net, binary = _release(name, tmp_path)
    h5 = tmp_path / "SE-BN-Inception.caffemodel.h5"
    v1 = tmp_path / "v1.caffemodel"
    caffe_io.write_caffemodel_h5(net, h5)
    caffe_io.write_caffemodel(net, v1, legacy_v1=True)
    outs = {}
    for path in (binary, h5, v1):
        convert(name, path, tmp_path / path.name.replace(".", "_"), prototxt, allow_unknown_hash=True)
        outs[path] = load_file(tmp_path / path.name.replace(".", "_") / "model.safetensors")
    for key, value in outs[binary].items():
        np.testing.assert_array_equal(value, outs[h5][key])
        np.testing.assert_array_equal(value, outs[v1][key])


def test_parameter_free_layers_named_differently_from_prototxt_still_convert(tmp_path, images):
    """The released SENet-154 caffemodel names its parameter-free layers unlike its prototxt (upstream report);
    weights are matched by the caffemodel's own parameter layers. Shown on SE-ResNet-50 for speed."""
    name = "se_resnet50"
    prototxt, net, _ = _release(name, tmp_path)
    for layer in net.layers:
        if not layer.blobs:
            layer.name = f"renamed_{layer.name.replace('/', '_')}"
    caffemodel = tmp_path / "renamed.caffemodel"
    caffe_io.write_caffemodel(net, caffemodel)
    out = tmp_path / "out"
    convert(name, caffemodel, out, prototxt, allow_unknown_hash=True)
    agreement = compare(create_model(name, pretrained=out), OpenCVCaffeNet(prototxt, caffemodel), images[:2])
    assert agreement.ok, agreement.summary()


def test_converted_weights_load_into_timm_strictly_with_equal_outputs(tmp_path, images):
    timm = pytest.importorskip("timm")
    from safetensors.torch import load_file

    name = "se_resnext50_32x4d"
    prototxt, _, caffemodel = _release(name, tmp_path)
    out = tmp_path / "out"
    convert(name, caffemodel, out, prototxt, allow_unknown_hash=True)
    ours = create_model(name, pretrained=out)
    twin = timm.create_model(registry.get(name).timm_architecture, pretrained=False).eval()
    twin.load_state_dict(load_file(out / "model.safetensors"), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), twin(x), rtol=0, atol=0)
