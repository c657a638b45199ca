"""Each Caffe semantic the release relies on, on a small net: our PyTorch side against OpenCV's Caffe runtime.

The nets are real prototxt + caffemodel files; the PyTorch side is the very code the converted models use
(``senet_zoo.models.layers``, ``caffe_layers.fold_batchnorm``, ``SEModule``).
"""
import numpy as np
import pytest
import torch
from google.protobuf import json_format

from senet_zoo.converters import caffe_io, caffe_layers, caffe_pb2
from senet_zoo.converters.opencv_reference import OpenCVCaffeNet
from senet_zoo.models.layers import SEModule, caffe_avg_pool, caffe_max_pool


def run_caffe(tmp_path, shape, layers, blobs, inputs, output):
    """Write a net with Input `data` of `shape` (+ extra Inputs) and run it in OpenCV."""
    proto = json_format.ParseDict({"name": "t", "layer": [
        {"name": "data", "type": "Input", "top": ["data"], "input_param": {"shape": [{"dim": list(shape)}]}},
        *layers]}, caffe_pb2.NetParameter())
    net = caffe_io.net_from_proto(proto, tmp_path / "t.prototxt")
    for layer in net.layers:
        layer.blobs = [np.asarray(b, np.float32) for b in blobs.get(layer.name, [])]
    caffe_io.write_prototxt(net, tmp_path / "t.prototxt")
    caffe_io.write_caffemodel(net, tmp_path / "t.caffemodel")
    return OpenCVCaffeNet(tmp_path / "t.prototxt", tmp_path / "t.caffemodel").forward(inputs, output=output)


def pool_layer(method, kernel, stride, pad=0):
    return {"name": "pool", "type": "Pooling", "bottom": ["data"], "top": ["pool"],
            "pooling_param": {"pool": method, "kernel_size": kernel, "stride": stride, "pad": pad}}


@pytest.mark.parametrize("size,kernel,stride,pad", [(112, 3, 2, 0), (28, 3, 2, 0), (7, 3, 2, 1), (8, 2, 3, 1)])
def test_max_pooling_rounds_up_like_caffe(tmp_path, size, kernel, stride, pad):
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    ref = run_caffe(tmp_path, x.shape, [pool_layer("MAX", kernel, stride, pad)], {}, x, "pool")
    ours = caffe_max_pool(kernel, stride, pad)(torch.from_numpy(x)).numpy()
    expected = caffe_layers.pooling_output_size(size, kernel, stride, pad)
    assert ours.shape[-1] == ref.shape[-1] == expected
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("size,kernel,stride,pad", [(7, 3, 1, 1), (6, 3, 2, 1), (8, 3, 2, 1), (5, 2, 2, 1)])
def test_average_pooling_counts_padding_but_not_ceil_overhang(tmp_path, size, kernel, stride, pad):
    x = np.random.default_rng(1).uniform(1, 2, size=(1, 3, size, size)).astype(np.float32)
    ref = run_caffe(tmp_path, x.shape, [pool_layer("AVE", kernel, stride, pad)], {}, x, "pool")
    ours = caffe_avg_pool(kernel, stride, pad)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    # the corner: padding counts in the divisor (unlike count_include_pad=False)
    excluded = torch.nn.AvgPool2d(kernel, stride, pad, ceil_mode=True, count_include_pad=False)
    assert not np.allclose(excluded(torch.from_numpy(x)).numpy(), ref)


def _batchnorm_then_scale(tmp_path, bn_blobs, eps, gamma, beta, x):
    """(OpenCV's Caffe output, ours) of BatchNorm + Scale over x: ours is the fold into one BatchNorm2d."""
    layers = [{"name": "bn", "type": "BatchNorm", "bottom": ["data"], "top": ["bn"],
               "batch_norm_param": {"use_global_stats": True, "eps": eps}},
              {"name": "sc", "type": "Scale", "bottom": ["bn"], "top": ["sc"], "scale_param": {"bias_term": True}}]
    ref = run_caffe(tmp_path, x.shape, layers, {"bn": bn_blobs, "sc": [gamma, beta]}, x, "sc")
    bn = torch.nn.BatchNorm2d(x.shape[1]).eval()
    state = caffe_layers.fold_batchnorm([np.asarray(b, np.float32) for b in bn_blobs], eps,
                                        [gamma.astype(np.float32), beta.astype(np.float32)])
    bn.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    with torch.no_grad():
        return ref, bn(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("scale_factor,eps", [(37.5, 1e-5), (0.25, 1e-3), (0.0, 1e-5)])
def test_batchnorm_scale_factor_and_eps(tmp_path, scale_factor, eps):
    rng = np.random.default_rng(2)
    c = 3  # OpenCVCaffeNet takes image-like (N, 3, H, W) inputs
    mean, var = rng.normal(size=c), rng.uniform(0.2, 3, size=c)
    gamma, beta = rng.uniform(0.5, 1.5, size=c), rng.normal(size=c)
    bn_blobs = [mean * scale_factor, var * scale_factor, [scale_factor]]
    x = rng.normal(size=(2, c, 4, 4)).astype(np.float32)
    ref, ours = _batchnorm_then_scale(tmp_path, bn_blobs, eps, gamma, beta, x)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    if scale_factor == 0:  # factor 0: statistics are zero, y = gamma * x / sqrt(eps) + beta
        np.testing.assert_allclose(ours, gamma[None, :, None, None] * x / np.sqrt(eps) + beta[None, :, None, None],
                                   rtol=1e-4)


def test_batchnorm_scale_factor_zero_zeroes_stored_statistics(tmp_path):
    """s = 0 with non-zero stored (mean·s, var·s): Caffe's factor is 0, not 1/s nor 1, so the statistics are
    zero whatever is stored (BatchNormLayer::Forward_cpu; OpenCV reads it the same way)."""
    c, eps = 3, 1e-5
    stored_mean, stored_var = np.array([5.0, -2.0, 0.5]), np.array([4.0, 9.0, 0.25])
    bn_blobs = [stored_mean, stored_var, [0.0]]
    gamma, beta = np.array([1.0, 0.5, 2.0]), np.array([0.0, 1.0, -1.0])
    mean, var = caffe_layers.batchnorm_statistics([np.asarray(b, np.float32) for b in bn_blobs])
    np.testing.assert_array_equal(mean, np.zeros(c, np.float32))
    np.testing.assert_array_equal(var, np.zeros(c, np.float32))
    x = np.random.default_rng(5).normal(size=(2, c, 4, 4)).astype(np.float32)
    ref, ours = _batchnorm_then_scale(tmp_path, bn_blobs, eps, gamma, beta, x)
    # the hand-written answer: statistics zero, so y = gamma * x / sqrt(eps) + beta
    hand = gamma[None, :, None, None] * x / np.sqrt(eps) + beta[None, :, None, None]
    np.testing.assert_allclose(ref, hand, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)


def _se_layers(c, reduced):
    return [
        {"name": "gp", "type": "Pooling", "bottom": ["data"], "top": ["gp"],
         "pooling_param": {"pool": "AVE", "global_pooling": True}},
        {"name": "down", "type": "Convolution", "bottom": ["gp"], "top": ["down"],
         "convolution_param": {"num_output": reduced, "kernel_size": [1]}},
        {"name": "relu", "type": "ReLU", "bottom": ["down"], "top": ["down"]},
        {"name": "up", "type": "Convolution", "bottom": ["down"], "top": ["up"],
         "convolution_param": {"num_output": c, "kernel_size": [1]}},
        {"name": "prob", "type": "Sigmoid", "bottom": ["up"], "top": ["up"]},
    ]


def _se_module(c, reduced, rng):
    blobs = {"down": [rng.normal(size=(reduced, c, 1, 1)), rng.normal(size=reduced)],
             "up": [rng.normal(size=(c, reduced, 1, 1)), rng.normal(size=c)]}
    se = SEModule(c, reduced).eval()
    se.load_state_dict({"fc1.weight": torch.tensor(blobs["down"][0], dtype=torch.float32),
                        "fc1.bias": torch.tensor(blobs["down"][1], dtype=torch.float32),
                        "fc2.weight": torch.tensor(blobs["up"][0], dtype=torch.float32),
                        "fc2.bias": torch.tensor(blobs["up"][1], dtype=torch.float32)})
    return se, blobs


def test_axpy_is_gate_times_branch_plus_shortcut(tmp_path):
    """Caffe's Axpy(a, x, y) = a·x + y; our blocks compute se_module(branch) + shortcut."""
    rng = np.random.default_rng(3)
    c, reduced = 3, 2
    se, blobs = _se_module(c, reduced, rng)
    # `data` is the residual branch; the shortcut is a second, different tensor derived from it
    layers = _se_layers(c, reduced) + [
        {"name": "short", "type": "Pooling", "bottom": ["data"], "top": ["short"],
         "pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 1, "pad": 1}},
        {"name": "axpy", "type": "Axpy", "bottom": ["up", "data", "short"], "top": ["axpy"]},
    ]
    x = rng.normal(size=(3, c, 6, 6)).astype(np.float32)
    ref = run_caffe(tmp_path, x.shape, layers, blobs, x, "axpy")
    t = torch.from_numpy(x)
    with torch.no_grad():
        ours = (se(t) + caffe_max_pool(3, 1, 1)(t)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_reshape_and_axis0_scale_is_the_se_reweighting(tmp_path):
    """SE-BN-Inception: gate (N, C, 1, 1) -> Reshape (N, C) -> Scale(x, gate) with axis 0."""
    rng = np.random.default_rng(4)
    c, reduced = 3, 2
    se, blobs = _se_module(c, reduced, rng)
    layers = _se_layers(c, reduced) + [
        {"name": "reshape", "type": "Reshape", "bottom": ["up"], "top": ["gate"],
         "reshape_param": {"shape": {"dim": [0, 0]}}},
        {"name": "scale", "type": "Scale", "bottom": ["data", "gate"], "top": ["out"],
         "scale_param": {"axis": 0, "bias_term": False}},
    ]
    x = rng.normal(size=(3, c, 5, 5)).astype(np.float32)
    ref = run_caffe(tmp_path, x.shape, layers, blobs, x, "out")
    with torch.no_grad():
        ours = se(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
