"""Synthetic weights in the official topologies: Caffe's exact blob shapes, BatchNorm scale factors far from 1,
and calibrated so that the nets behave (finite logits of order 1-10, different inputs win different classes,
SE gates not saturated, activations of order 1 through SENet-154), checked through OpenCV's Caffe runtime.

One test per official prototxt checks everything on one synthesized net (SENet-154 included: ~115 M
parameters, a few seconds), so no more than one net is held in memory at a time.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from senet_zoo.converters import caffe_io, synthetic
from senet_zoo.converters.opencv_reference import OpenCVCaffeNet, caffe_input
from conftest import PROTOTXTS, release_file

PARAMETER_TYPES = {"Convolution", "BatchNorm", "Scale", "InnerProduct"}


def expected_blob_shapes(net) -> dict[str, list[tuple[int, ...]]]:
    """Caffe's blob shapes for every parameter layer, from the prototxt alone (our own shape inference:
    convolutions round down, pooling rounds up with Caffe's clip)."""
    shapes: dict[str, tuple[int, ...]] = {}
    expected: dict[str, list[tuple[int, ...]]] = {}
    for layer in net.layers:
        p = layer.proto
        if layer.type == "Input":
            shapes[layer.tops[0]] = tuple(net.input_shape[1:])
            continue
        c, *hw = shapes[layer.bottoms[0]]
        if layer.type == "Convolution":
            cp = p.convolution_param
            k, s = cp.kernel_size[0], (cp.stride[0] if cp.stride else 1)
            pad = cp.pad[0] if cp.pad else 0
            out = (cp.num_output, *[(n + 2 * pad - k) // s + 1 for n in hw])
            expected[layer.name] = [(cp.num_output, c // cp.group, k, k)] + [(cp.num_output,)] * cp.bias_term
        elif layer.type == "Pooling":
            pp = p.pooling_param
            if pp.global_pooling:
                out = (c, 1, 1)
            else:
                def pooled(n):
                    size = math.ceil((n + 2 * pp.pad - pp.kernel_size) / pp.stride) + 1
                    return size - 1 if pp.pad and (size - 1) * pp.stride >= n + pp.pad else size
                out = (c, *[pooled(n) for n in hw])
        elif layer.type == "BatchNorm":
            out, expected[layer.name] = (c, *hw), [(c,), (c,), (1,)]
        elif layer.type == "Scale":
            out = (c, *hw)
            if len(layer.bottoms) == 1:
                expected[layer.name] = [(c,)] + [(c,)] * p.scale_param.bias_term
        elif layer.type == "InnerProduct":
            n = p.inner_product_param.num_output
            out, expected[layer.name] = (n,), [(n, math.prod((c, *hw)))] + [(n,)] * p.inner_product_param.bias_term
        elif layer.type == "Concat":
            out = (sum(shapes[b][0] for b in layer.bottoms), *hw)
        elif layer.type == "Reshape":
            out = (c,)
        elif layer.type == "Axpy":
            out = shapes[layer.bottoms[1]]
        else:  # ReLU, Sigmoid, Dropout, Softmax
            out = (c, *hw)
        shapes[layer.tops[0]] = tuple(out)
    return expected


def test_blob_shape_inference_of_this_test_matches_the_release_head():
    net = caffe_io.read_prototxt(release_file(PROTOTXTS["senet154"]))
    shapes = expected_blob_shapes(net)
    assert shapes["conv1_1/3x3_s2"] == [(64, 3, 3, 3)]
    assert shapes["conv2_1_1x1_proj"] == [(256, 128, 1, 1)]
    assert shapes["conv2_1_3x3"] == [(256, 2, 3, 3)]  # 128 -> 256 channels in 64 groups
    assert shapes["classifier"] == [(1000, 2048), (1000,)]


@pytest.mark.parametrize("name", list(PROTOTXTS))
def test_synthetic_release_net(name, tmp_path):
    prototxt = release_file(PROTOTXTS[name])
    net = caffe_io.read_prototxt(prototxt)
    started = time.perf_counter()
    syn = synthetic.synthesize(net, seed=0)
    seconds = time.perf_counter() - started
    print(f"{name}: synthesized {sum(b.size for l in syn.param_layers() for b in l.blobs) / 1e6:.1f} M "
          f"parameters in {seconds:.1f} s")
    assert seconds < 60

    # exactly Caffe's blob shapes, float32, on exactly the parameter layers; the input net is untouched
    expected = expected_blob_shapes(net)
    assert {l.name for l in syn.param_layers()} == set(expected)
    for layer in syn.layers:
        assert [b.shape for b in layer.blobs] == expected.get(layer.name, []), layer.name
        assert all(b.dtype == np.float32 and b.flags.c_contiguous and np.isfinite(b).all() for b in layer.blobs)
    assert not net.param_layers()
    assert [l.name for l in syn.layers] == [l.name for l in net.layers]

    # BatchNorm scale factors far from 1, varying per layer
    factors = np.array([l.blobs[2][0] for l in syn.layers if l.type == "BatchNorm"])
    assert ((factors >= 0.3) & (factors <= 50)).all()
    assert not ((factors > 0.5) & (factors < 2)).any()
    assert (factors < 1).sum() >= 3 and (factors > 2).sum() >= 3 and len(set(factors.tolist())) == len(factors)

    # through OpenCV: finite logits of order 1-10, different classes, gates and activations of order 1
    blob = caffe_input(synthetic.calibration_images(3, seed=1))
    ours = synthetic.forward(syn, blob)  # the calibration interpreter, compared below
    caffemodel = tmp_path / "synthetic.caffemodel"
    caffe_io.write_caffemodel(syn, caffemodel)
    gates = [l.tops[0] for l in syn.layers if l.type == "Sigmoid"]
    stream = [l.tops[0] for l in syn.layers if l.type in ("Axpy", "Concat")]
    del syn  # SENet-154: one copy of the weights in memory at a time
    reference = OpenCVCaffeNet(prototxt, caffemodel)
    outputs = reference.forward_blobs(blob, [reference.default_output, *gates, *stream])
    logits = outputs[reference.default_output]
    assert logits.shape == (3, 1000) and np.isfinite(logits).all()
    spread = logits.std(1)
    print(f"{name}: logit std per input {np.round(spread, 2)}, top-1 {logits.argmax(1)}")
    assert ((spread > 0.5) & (spread < 20)).all(), spread
    assert len(set(logits.argmax(1).tolist())) >= 2
    gate_values = np.concatenate([outputs[g].ravel() for g in gates])
    low, median, high = np.quantile(gate_values, [0.01, 0.5, 0.99])
    print(f"{name}: {len(gates)} SE gates, quantiles 1% {low:.3f} 50% {median:.3f} 99% {high:.3f}")
    assert 0.01 < low and high < 0.99 and 0.3 < median < 0.7
    rms = np.array([np.sqrt(np.mean(outputs[s].astype(np.float64) ** 2)) for s in stream])
    assert ((rms > 0.2) & (rms < 5)).all(), rms

    # the calibration interpreter (torch) agrees with OpenCV on the whole official net
    assert np.abs(ours - logits).max() <= 1e-3 * logits.std()


def test_synthesis_is_deterministic_and_seeded():
    net = caffe_io.read_prototxt(release_file(PROTOTXTS["se_bn_inception"]))
    a, b, c = (synthetic.synthesize(net, seed=s) for s in (3, 3, 4))
    for la, lb, lc in zip(a.param_layers(), b.param_layers(), c.param_layers()):
        for x, y, z in zip(la.blobs, lb.blobs, lc.blobs):
            np.testing.assert_array_equal(x, y)
            assert x.size == 1 or not np.array_equal(x, z)
    np.testing.assert_array_equal(synthetic.calibration_images(2, seed=5), synthetic.calibration_images(2, seed=5))


def test_explicit_calibration_batch_sets_the_batchnorm_statistics():
    net = caffe_io.read_prototxt(release_file(PROTOTXTS["se_bn_inception"]))
    blob = caffe_input(synthetic.calibration_images(2, seed=9))
    syn = synthetic.synthesize(net, seed=0, calibration=blob)
    first = syn.layers[1]
    bn = syn.layer("conv1/7x7_s2/bn")
    conv = first.blobs[0].astype(np.float64)
    # the first BatchNorm's statistics are those of conv1 on the calibration batch
    out = torch.nn.functional.conv2d(torch.from_numpy(blob).double(), torch.from_numpy(conv), stride=2, padding=3)
    s = bn.blobs[2][0]
    np.testing.assert_allclose(bn.blobs[0] / s, out.mean((0, 2, 3)).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.blobs[1] / s, out.var((0, 2, 3), unbiased=False).numpy(), rtol=1e-4)


def test_converter_mistakes_change_the_logits_a_lot():
    """What the calibration is for: forgetting the BatchNorm scale factor, or gating the shortcut instead of
    the residual branch, moves the logits by far more than any tolerance."""
    net = caffe_io.read_prototxt(release_file(PROTOTXTS["se_resnet50"]))
    syn = synthetic.synthesize(net, seed=0)
    blob = caffe_input(synthetic.calibration_images(2, seed=2))
    right = synthetic.forward(syn, blob)

    def relative_change(mutate):
        broken = synthetic.synthesize(net, seed=0)
        for layer in broken.layers:
            mutate(layer)
        return np.abs(synthetic.forward(broken, blob) - right).max() / right.std()

    def no_division(layer):
        if layer.type == "BatchNorm":
            layer.blobs[2] = np.ones(1, np.float32)

    def gate_on_shortcut(layer):
        if layer.type == "Axpy":
            layer.bottoms = [layer.bottoms[0], layer.bottoms[2], layer.bottoms[1]]

    assert relative_change(no_division) > 0.5
    assert relative_change(gate_on_shortcut) > 0.5


def test_unsupported_layer_type_is_a_clear_error(tmp_path):
    from senet_zoo.errors import SenetZooError

    prototxt = tmp_path / "lrn.prototxt"
    prototxt.write_text('name: "x"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 '
                        'dim: 3 dim: 8 dim: 8 } } }\nlayer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" }\n')
    with pytest.raises(SenetZooError, match="layer 'lrn': type 'LRN' is not supported"):
        synthetic.synthesize(caffe_io.read_prototxt(prototxt))
