"""OpenCV's dnn as an independent Caffe runtime: each Caffe semantic the release relies on, on small hand-built
nets (prototxt + real binary caffemodel written by caffe_io), against a straightforward numpy reference.

Every net is also run through the calibration interpreter of ``senet_zoo.converters.synthetic`` (torch,
Caffe semantics), so both runtimes are held to the same numpy reference.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from senet_zoo.converters import caffe_io, synthetic  # noqa: E402
from senet_zoo.converters.opencv_reference import (  # noqa: E402
    AXPY_TYPE, CAFFE_MEAN_BGR, OpenCVCaffeNet, caffe_input,
)
from senet_zoo.errors import SenetZooError  # noqa: E402


def _input(shape) -> str:
    return ('layer { name: "data" type: "Input" top: "data" input_param { shape { '
            + " ".join(f"dim: {d}" for d in shape) + " } } }\n")


def build(tmp_path, body: str, shape, blobs: dict | None = None, name: str = "net"):
    """Write ``<name>.prototxt`` (an Input of ``shape`` + ``body``) and a caffemodel with ``blobs``."""
    prototxt = tmp_path / f"{name}.prototxt"
    prototxt.write_text(f'name: "{name}"\n' + _input(shape) + body)
    net = caffe_io.read_prototxt(prototxt)
    for layer in net.layers:
        layer.blobs = [np.asarray(b, np.float32) for b in (blobs or {}).get(layer.name, [])]
    caffemodel = tmp_path / f"{name}.caffemodel"
    caffe_io.write_caffemodel(net, caffemodel)
    return prototxt, caffemodel, net


def run_both(tmp_path, body, x, blobs=None, output=None, name="net"):
    """(OpenCV's output, the interpreter's output) for blob ``output`` of the net."""
    prototxt, caffemodel, net = build(tmp_path, body, x.shape, blobs, name)
    ours = OpenCVCaffeNet(prototxt, caffemodel).forward(x, output)
    theirs = synthetic.forward(net, x, output)
    return ours, theirs


def assert_close(actual, expected, rtol=1e-5, atol=1e-5):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def caffe_pool(x: np.ndarray, kernel: int, stride: int, pad: int, mode: str) -> np.ndarray:
    """Caffe's PoolingLayer::Forward_cpu, transcribed (square kernel, CEIL rounding)."""
    n, c, h, w = x.shape

    def size(length):
        out = int(math.ceil((length + 2 * pad - kernel) / stride)) + 1
        if pad and (out - 1) * stride >= length + pad:
            out -= 1
        return out

    oh, ow = size(h), size(w)
    y = np.empty((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride - pad, j * stride - pad
            he, we = min(hs + kernel, h + pad), min(ws + kernel, w + pad)
            pool_size = (he - hs) * (we - ws)  # padding counts, overhang past it does not
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we].astype(np.float64)
            y[:, :, i, j] = window.max((2, 3)) if mode == "MAX" else window.sum((2, 3)) / pool_size
    return y


RNG = np.random.default_rng(20170905)

# ---------------------------------------------------------------------------------------------------------------
# Axpy

AXPY_BODY = """
layer { name: "pool" type: "Pooling" bottom: "data" top: "gate" pooling_param { pool: AVE global_pooling: true } }
layer { name: "prob" type: "Sigmoid" bottom: "gate" top: "gate" }
layer { name: "shortcut" type: "ReLU" bottom: "data" top: "shortcut" }
layer { name: "sum" type: "Axpy" bottom: "gate" bottom: "data" bottom: "shortcut" top: "sum" }
"""


def _axpy_operands(x):
    a = 1 / (1 + np.exp(-x.astype(np.float64).mean((2, 3), keepdims=True)))
    return a, x.astype(np.float64), np.maximum(x, 0).astype(np.float64)


def test_axpy_is_gate_times_residual_plus_shortcut(tmp_path):
    x = RNG.standard_normal((2, 5, 3, 4)).astype(np.float32)
    a, branch, shortcut = _axpy_operands(x)
    ours, interp = run_both(tmp_path, AXPY_BODY, x, output="sum")
    assert_close(ours, a * branch + shortcut)
    assert_close(interp, a * branch + shortcut)
    assert not np.allclose(ours, a * shortcut + branch, atol=1e-2)


def test_opencv_builtin_axpy_is_wrong_which_is_why_we_replace_it(tmp_path):
    """OpenCV rewrites Axpy(a, x, y) into Scale(y, a) + x = a·y + x (the gate on the shortcut), which also
    fails for batches > 1; a Python layer registered as "Axpy" is ignored. Hence the renamed type."""
    x = RNG.standard_normal((1, 5, 3, 4)).astype(np.float32)
    a, branch, shortcut = _axpy_operands(x)
    prototxt, caffemodel, _ = build(tmp_path, AXPY_BODY, x.shape)

    class Ignored:
        def __init__(self, params, blobs):
            pass

        def getMemoryShapes(self, inputs):  # noqa: N802
            return [inputs[1]]

        def forward(self, inputs):
            raise AssertionError("never called")

    cv2.dnn_registerLayer("Axpy", Ignored)
    try:
        builtin = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        types = [builtin.getLayer(i).type for i in range(1, len(builtin.getLayerNames()) + 1)]
    finally:
        cv2.dnn_unregisterLayer("Axpy")
    assert "Eltwise" in types and "Scale" in types  # OpenCV's own rewrite, not our layer
    builtin.setInput(x)
    wrong = builtin.forward("sum")
    assert_close(wrong, a * shortcut + branch)  # a·y + x
    assert not np.allclose(wrong, a * branch + shortcut, atol=1e-2)

    batch = np.concatenate([x, -x])
    prototxt2, caffemodel2, _ = build(tmp_path, AXPY_BODY, batch.shape, name="batch2")
    builtin = cv2.dnn.readNetFromCaffe(str(prototxt2), str(caffemodel2))
    builtin.setInput(batch)
    with pytest.raises(cv2.error):
        builtin.forward("sum")
    # ours handles the batch
    a, branch, shortcut = _axpy_operands(batch)
    assert_close(OpenCVCaffeNet(prototxt2, caffemodel2).forward(batch, "sum"), a * branch + shortcut)


def test_several_nets_coexist_and_the_custom_type_is_unregistered_afterwards(tmp_path):
    x = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32)
    prototxt, caffemodel, _ = build(tmp_path, AXPY_BODY, x.shape)
    first, second = OpenCVCaffeNet(prototxt, caffemodel), OpenCVCaffeNet(prototxt, caffemodel)
    assert first.num_axpy == 1
    np.testing.assert_array_equal(first.forward(x, "sum"), second.forward(x, "sum"))
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(prototxt.read_text().replace('type: "Axpy"', f'type: "{AXPY_TYPE}"'))
    with pytest.raises(cv2.error):  # the registration did not outlive construction
        net = cv2.dnn.readNetFromCaffe(str(renamed), str(caffemodel))
        net.setInput(x)
        net.forward("sum")


# ---------------------------------------------------------------------------------------------------------------
# Convolution precision (Winograd off)


def test_winograd_is_off_so_3x3_convolution_matches_float64(tmp_path):
    channels = 256
    body = (f'layer {{ name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param '
            f'{{ num_output: {channels} kernel_size: 3 pad: 1 bias_term: false }} }}\n')
    w = (RNG.standard_normal((channels, channels, 3, 3)) / math.sqrt(channels * 9)).astype(np.float32)
    x = RNG.standard_normal((1, channels, 12, 12)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    expected = np.einsum("nchwij,ocij->nohw", windows, w.astype(np.float64), optimize=True)
    prototxt, caffemodel, net = build(tmp_path, body, x.shape, {"conv": [w]})
    scale = np.abs(expected).max()
    error = np.abs(OpenCVCaffeNet(prototxt, caffemodel).forward(x, "conv") - expected).max() / scale
    assert error < 2e-6, error
    # what Winograd would have cost (it is OpenCV's default; ~1.6e-5 on x86-64 with AVX2)
    winograd = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    winograd.enableWinograd(True)
    winograd.setInput(x)
    print(f"3x3 conv relative error: Winograd off {error:.1e}, "
          f"on {np.abs(winograd.forward('conv') - expected).max() / scale:.1e}")
    assert np.abs(synthetic.forward(net, x, "conv") - expected).max() / scale < 2e-6


# ---------------------------------------------------------------------------------------------------------------
# Pooling


def _pool_body(mode, kernel, stride, pad):
    return (f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param {{ pool: {mode} '
            f'kernel_size: {kernel} stride: {stride} pad: {pad} }} }}\n')


@pytest.mark.parametrize("size,kernel,stride,pad,expected_size", [
    (8, 3, 2, 0, 4),    # ceil: floor would give 3
    (112, 3, 2, 0, 56),  # the release's pool1 (ceil((112-3)/2)+1 = 56 vs floor 55)
    (5, 2, 3, 1, 2),    # ceil gives 3; Caffe's clip drops the window that would start in the padding
    (7, 3, 2, 1, 4),
])
def test_max_pooling_rounds_up_with_caffes_clip(tmp_path, size, kernel, stride, pad, expected_size):
    x = RNG.standard_normal((1, 3, size, size)).astype(np.float32)
    expected = caffe_pool(x, kernel, stride, pad, "MAX")
    assert expected.shape[-1] == expected_size
    ours, interp = run_both(tmp_path, _pool_body("MAX", kernel, stride, pad), x, output="pool")
    assert_close(ours, expected)
    assert_close(interp, expected)


def test_average_pooling_counts_padding_but_not_the_ceil_overhang(tmp_path):
    # 6x6, kernel 3, stride 2, pad 1: 4x4 output. The first window covers one padding row (divisor 3, not
    # 2); the last starts at 5 and ends at 8, past the padded edge 7 (divisor 2: one real row + one padding
    # row, not the kernel's 3 and not the 1 real row).
    x = (RNG.standard_normal((1, 2, 6, 6)) + 3).astype(np.float32)
    expected = caffe_pool(x, 3, 2, 1, "AVE")
    assert expected.shape == (1, 2, 4, 4)
    ours, interp = run_both(tmp_path, _pool_body("AVE", 3, 2, 1), x, output="pool")
    assert_close(ours, expected)
    assert_close(interp, expected)
    x64 = x.astype(np.float64)
    assert ours[0, 0, 0, 0] == pytest.approx(x64[0, 0, :2, :2].sum() / 9, rel=1e-5)   # corner: 4 real of 3x3
    assert ours[0, 0, 3, 3] == pytest.approx(x64[0, 0, 5:, 5:].sum() / 4, rel=1e-5)   # 2x2 of padded area
    assert not np.isclose(ours[0, 0, 3, 3], x64[0, 0, 5:, 5:].sum() / 9, rtol=1e-3)  # not the full kernel
    assert not np.isclose(ours[0, 0, 3, 3], x64[0, 0, 5:, 5:].sum() / 1, rtol=1e-3)  # not real pixels only


def test_release_pooling_layers(tmp_path):
    """SE-BN-Inception's 3x3/1 pad-1 AVE pool and the global AVE pool of every SE block."""
    x = RNG.standard_normal((2, 4, 7, 7)).astype(np.float32)
    body = (_pool_body("AVE", 3, 1, 1)
            + 'layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { pool: AVE engine: CAFFE '
              'global_pooling: true } }\n')
    ours, interp = run_both(tmp_path, body, x, output="pool")
    assert_close(ours, caffe_pool(x, 3, 1, 1, "AVE"))
    assert_close(interp, caffe_pool(x, 3, 1, 1, "AVE"))
    ours, interp = run_both(tmp_path, body, x, output="g", name="g")
    assert_close(ours, x.mean((2, 3), keepdims=True))
    assert_close(interp, x.mean((2, 3), keepdims=True))


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm, Scale, the SE-BN-Inception gate


@pytest.mark.parametrize("s", [7.5, 0.3, 0.0])
def test_batchnorm_divides_by_its_scale_factor_and_uses_the_layer_eps(tmp_path, s):
    eps = 0.25  # large, so that a runtime ignoring the layer's eps would be far off
    body = (f'layer {{ name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param '
            f'{{ use_global_stats: true eps: {eps} }} }}\n')
    channels = 4
    mean = RNG.standard_normal(channels).astype(np.float32)
    var = RNG.uniform(0.05, 2, channels).astype(np.float32)
    x = RNG.standard_normal((2, channels, 3, 3)).astype(np.float32)
    blobs = {"bn": [mean * s, var * s, np.array([s], np.float32)]}
    factor = 0.0 if s == 0 else 1.0 / s  # Caffe: s = 0 means factor 0
    m, v = (mean * s * factor).astype(np.float64), (var * s * factor).astype(np.float64)
    expected = (x - m[:, None, None]) / np.sqrt(v[:, None, None] + eps)
    ours, interp = run_both(tmp_path, body, x, blobs, output="data")
    assert_close(ours, expected)
    assert_close(interp, expected)


def test_convolution_batchnorm_scale_relu_chain(tmp_path):
    """The residual nets' unit (OpenCV fuses it into the convolution), with in-place tops as in the release."""
    body = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 6 kernel_size: 3
  stride: 2 pad: 1 bias_term: false } }
layer { name: "conv/bn" type: "BatchNorm" bottom: "conv" top: "conv" batch_norm_param { use_global_stats: true } }
layer { name: "conv/bn/scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "conv/relu" type: "ReLU" bottom: "conv" top: "conv" }
"""
    x = RNG.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = RNG.standard_normal((6, 3, 3, 3)).astype(np.float32)
    mean, var, s = RNG.standard_normal(6), RNG.uniform(0.5, 2, 6), 23.0
    gamma, beta = RNG.uniform(0.5, 1.5, 6), RNG.uniform(-1, 1, 6)
    blobs = {"conv": [w], "conv/bn": [mean * s, var * s, [s]], "conv/bn/scale": [gamma, beta]}
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    conv = np.einsum("nchwij,ocij->nohw", windows, w.astype(np.float64))
    c = (slice(None), None, None)
    expected = np.maximum((conv - mean[c]) / np.sqrt(var[c] + 1e-5) * gamma[c] + beta[c], 0)
    ours, interp = run_both(tmp_path, body, x, blobs, output="conv")
    assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert_close(interp, expected, rtol=1e-4, atol=1e-4)


def test_scale_with_bias(tmp_path):
    body = 'layer { name: "sc" type: "Scale" bottom: "data" top: "sc" scale_param { bias_term: true } }\n'
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    gamma, beta = RNG.standard_normal(3).astype(np.float32), RNG.standard_normal(3).astype(np.float32)
    ours, interp = run_both(tmp_path, body, x, {"sc": [gamma, beta]}, output="sc")
    expected = x * gamma[:, None, None] + beta[:, None, None]
    assert_close(ours, expected)
    assert_close(interp, expected)


def test_se_bn_inception_gate_reshape_and_two_input_scale_on_axis_0(tmp_path):
    body = """
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "prob" type: "Sigmoid" bottom: "pool" top: "pool" }
layer { name: "prob_reshape" type: "Reshape" bottom: "pool" top: "prob_reshape"
  reshape_param { shape { dim: 0 dim: 0 } } }
layer { name: "scale" type: "Scale" bottom: "data" bottom: "prob_reshape" top: "output"
  scale_param { axis: 0 bias_term: false } }
"""
    x = RNG.standard_normal((3, 4, 5, 5)).astype(np.float32)
    gate = 1 / (1 + np.exp(-x.astype(np.float64).mean((2, 3))))
    ours, interp = run_both(tmp_path, body, x, output="output")
    assert_close(ours, x * gate[:, :, None, None])
    assert_close(interp, x * gate[:, :, None, None])
    ours, interp = run_both(tmp_path, body, x, output="prob_reshape", name="reshape")
    assert_close(ours, gate)
    assert_close(interp, gate)


# ---------------------------------------------------------------------------------------------------------------
# Outputs, input convention, errors

HEAD_BODY = """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE kernel_size: 3 stride: 1 } }
layer { name: "drop" type: "Dropout" bottom: "pool" top: "pool" dropout_param { dropout_ratio: 0.2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def test_default_output_is_the_last_inner_product_and_blobs_are_caffe_blob_names(tmp_path):
    x = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
    w, b = RNG.standard_normal((4, 3, 1, 1)), RNG.standard_normal(4)
    fw, fb = RNG.standard_normal((5, 4)), RNG.standard_normal(5)
    prototxt, caffemodel, net = build(tmp_path, HEAD_BODY, x.shape, {"conv": [w, b], "fc": [fw, fb]})
    ref = OpenCVCaffeNet(prototxt, caffemodel)
    conv = np.maximum(np.einsum("nchw,oc->nohw", x.astype(np.float64), w[:, :, 0, 0]) + b[:, None, None], 0)
    logits = conv.mean((2, 3)) @ fw.T + fb
    assert_close(ref.forward(x), logits)
    assert_close(synthetic.forward(net, x), logits)
    assert_close(ref.forward(x, "conv"), conv)  # blob "conv" after the in-place ReLU, as in Caffe
    probs = ref.forward_blobs(x, ["prob", "fc"])
    assert_close(probs["prob"], np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    assert ref.forward(x).dtype == np.float32
    with pytest.raises(SenetZooError, match="no blob or layer named 'nope'"):
        ref.forward(x, "nope")


def test_caffe_input_is_bgr_minus_mean_nchw():
    images = RNG.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    blob = caffe_input(images)
    assert blob.shape == (2, 3, 5, 7) and blob.dtype == np.float32 and blob.flags.c_contiguous
    for channel, mean in enumerate((104, 117, 123)):
        np.testing.assert_array_equal(blob[:, channel], images[..., channel].astype(np.float32) - mean)
    np.testing.assert_array_equal(CAFFE_MEAN_BGR, [104, 117, 123])
    assert caffe_input(images[0]).shape == (1, 3, 5, 7)


def test_unloadable_files_raise_one_line_errors(tmp_path):
    x_shape = (1, 3, 3, 3)
    prototxt, caffemodel, _ = build(tmp_path, HEAD_BODY, x_shape,
                                    {"conv": [np.ones((4, 3, 1, 1)), np.ones(4)], "fc": [np.ones((5, 4)), np.ones(5)]})
    with pytest.raises(SenetZooError, match="no such file"):
        OpenCVCaffeNet(prototxt, tmp_path / "missing.caffemodel")
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\xff\x00 definitely not protobuf" * 10)
    with pytest.raises(SenetZooError) as err:
        OpenCVCaffeNet(prototxt, garbage)
    assert "OpenCV" in str(err.value) and "\n" not in str(err.value) and str(garbage) in str(err.value)
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(caffemodel.read_bytes()[:-7])
    with pytest.raises(SenetZooError) as err:
        OpenCVCaffeNet(prototxt, truncated)
    assert "\n" not in str(err.value)
    _, incomplete, _ = build(tmp_path, HEAD_BODY, x_shape, {"conv": [np.ones((4, 3, 1, 1)), np.ones(4)]},
                             name="no_fc")
    with pytest.raises(SenetZooError, match="has no weights for InnerProduct layer 'fc'"):
        OpenCVCaffeNet(prototxt, incomplete).forward(np.zeros(x_shape, np.float32))
