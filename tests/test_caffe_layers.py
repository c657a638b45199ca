"""Each rule of ``converters/caffe_layers.py`` on blobs small enough to work out by hand.

The expectations are Caffe's own formulas evaluated here by hand (written as literals), for the shapes old and
new caffemodels store: BatchNormLayer's scale factor, PoolingLayer::Reshape's rounding and clip, and the blob
layouts of Convolution and InnerProduct. The same rules against an outside runtime: test_caffe_semantics.py.
"""
import numpy as np
import pytest

from senet_zoo.converters import caffe_layers


def f32(*values):
    return np.array(values, np.float32)


# ------------------------------------------------------------------------------------------------ BatchNorm

def test_batchnorm_statistics_multiply_by_the_float32_reciprocal_as_caffe_does():
    # Caffe: scale_factor = 1 / blobs_[2] (float32), then caffe_cpu_scale: 5 * fl(1/3) = 1.66666671... rounds
    # to 0x1.aaaaacp+0, one float32 step above 5 / 3 (0x1.aaaaaap+0)
    mean, var = caffe_layers.batchnorm_statistics([f32(5.0, 6.0), f32(3.0, 1.5), f32(3.0)])
    assert mean.dtype == np.float32 and var.dtype == np.float32
    assert mean.tolist() == [float.fromhex("0x1.aaaaacp+0"), 2.0]
    assert var.tolist() == [1.0, 0.5]
    # legacy 4-D blobs (1 x 1 x 1 x C, scale factor 1 x 1 x 1 x 1) and float64 values
    mean, var = caffe_layers.batchnorm_statistics([np.array([[[[4.0, 8.0]]]]), np.array([[[[2.0, 6.0]]]]),
                                                   np.array([[[[2.0]]]])])
    assert mean.shape == (2,) and mean.dtype == np.float32 and mean.tolist() == [2.0, 4.0]
    assert var.dtype == np.float32 and var.tolist() == [1.0, 3.0]


def test_fold_batchnorm_is_one_batchnorm2d_state():
    bn = [f32(4.0, -2.0), f32(3.0, 5.0), f32(2.0)]          # mean (2, -1), var (1.5, 2.5)
    state = caffe_layers.fold_batchnorm(bn, 1e-5, [f32(0.5, 2.0), f32(1.0, -1.0)])
    assert sorted(state) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    assert state["weight"].tolist() == [0.5, 2.0] and state["bias"].tolist() == [1.0, -1.0]
    assert state["running_mean"].tolist() == [2.0, -1.0]
    assert state["running_var"].tolist() == [1.5, 2.5]      # eps is torch's own: nothing moved
    assert state["num_batches_tracked"].shape == () and state["num_batches_tracked"].dtype == np.int64
    assert int(state["num_batches_tracked"]) == 0
    assert all(state[k].dtype == np.float32 for k in ("weight", "bias", "running_mean", "running_var"))


def test_fold_batchnorm_moves_another_eps_into_the_variance():
    bn = [f32(0.0, 0.0), f32(3.0, 5.0), f32(2.0)]
    state = caffe_layers.fold_batchnorm(bn, 1e-3, [f32(1.0, 1.0), f32(0.0, 0.0)])
    assert state["running_var"].dtype == np.float32
    np.testing.assert_array_equal(state["running_var"], f32(1.50099, 2.50099))   # var + 0.001 - 0.00001
    # float32's nearest to 1e-5 (what a prototxt's float field holds) is torch's eps: nothing moved, not even
    # the -2.5e-14 between the two, which a variance of 1e-9 would show
    tiny = [f32(0.0, 0.0, 0.0), f32(3.0, 5.0, 1e-9), f32(1.0)]
    state = caffe_layers.fold_batchnorm(tiny, float(np.float32(1e-5)), [f32(1, 1, 1), f32(0, 0, 0)])
    np.testing.assert_array_equal(state["running_var"], f32(3.0, 5.0, 1e-9))


def test_fold_batchnorm_scale_without_bias_and_legacy_shapes():
    bn = [np.array([[[[2.0, 4.0]]]], np.float32), np.array([[[[2.0, 2.0]]]], np.float32), np.array([[[[2.0]]]])]
    state = caffe_layers.fold_batchnorm(bn, 1e-5, [np.array([[[[3.0, 4.0]]]])])   # float64 gamma, no beta
    assert state["weight"].shape == (2,) and state["weight"].dtype == np.float32
    assert state["weight"].tolist() == [3.0, 4.0]
    assert state["bias"].shape == (2,) and state["bias"].dtype == np.float32 and state["bias"].tolist() == [0, 0]
    assert state["running_mean"].tolist() == [1.0, 2.0] and state["running_var"].tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------------- Convolution, InnerProduct

def test_convolution_state_and_the_first_layers_bgr_to_rgb():
    weight = np.arange(2 * 3 * 1 * 1, dtype=np.float64).reshape(2, 3, 1, 1)   # (out, in, kh, kw), float64
    state = caffe_layers.convolution([weight, np.array([[[[7.0, 8.0]]]])], reverse_input_channels=False)
    assert sorted(state) == ["bias", "weight"]
    assert state["weight"].dtype == np.float32 and state["weight"].flags.c_contiguous
    assert state["weight"][:, :, 0, 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert state["bias"].dtype == np.float32 and state["bias"].tolist() == [7.0, 8.0]
    rgb = caffe_layers.convolution([weight], reverse_input_channels=True)
    assert sorted(rgb) == ["weight"]                                          # no bias blob, no bias
    assert rgb["weight"].dtype == np.float32 and rgb["weight"].flags.c_contiguous
    assert rgb["weight"][:, :, 0, 0].tolist() == [[2, 1, 0], [5, 4, 3]]       # input channels B,G,R -> R,G,B


def test_inner_product_state_legacy_shapes_and_class_order():
    weight = np.arange(6, dtype=np.float64).reshape(1, 1, 3, 2)              # old files: 1 x 1 x out x in
    state = caffe_layers.inner_product([weight, np.array([[[[10.0, 11.0, 12.0]]]])])
    assert state["weight"].dtype == np.float32 and state["weight"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert state["bias"].dtype == np.float32 and state["bias"].tolist() == [10, 11, 12]
    moved = caffe_layers.inner_product([weight.reshape(3, 2), f32(10, 11, 12)], row_order=np.array([2, 0, 1]))
    assert moved["weight"].tolist() == [[4, 5], [0, 1], [2, 3]] and moved["bias"].tolist() == [12, 10, 11]
    assert moved["weight"].flags.c_contiguous and moved["bias"].flags.c_contiguous
    no_bias = caffe_layers.inner_product([weight.reshape(3, 2)])
    assert no_bias["bias"].dtype == np.float32 and no_bias["bias"].tolist() == [0, 0, 0]


# -------------------------------------------------------------------------------------------------- Pooling

@pytest.mark.parametrize("size, kernel, stride, pad, ceil, any_pad, want", [
    (112, 3, 2, 0, True, None, 56),    # ceil(109 / 2) + 1
    (112, 3, 2, 0, False, None, 55),   # FLOOR: floor(109 / 2) + 1
    (7, 3, 2, 1, True, None, 4),       # ceil(6 / 2) + 1; the last window starts at 6 < 7 + 1: kept
    (8, 2, 3, 1, True, None, 3),       # ceil(8 / 3) + 1 = 4, but the 4th window starts at 9 >= 8 + 1: clipped
    (8, 2, 3, 1, False, None, 3),      # floor(8 / 3) + 1 = 3; the 3rd starts at 6 < 9: kept
    (6, 2, 3, 0, True, True, 2),       # no pad on this axis, pad on the other: Caffe clips here too (6 >= 6)
    (6, 2, 3, 0, True, False, 3),      # no pad anywhere: no clip
    (6, 2, 3, 0, True, None, 3),       # any_pad defaults to this axis's pad
    (7, 7, 1, 0, True, None, 1),       # a window as large as the map
])
def test_pooling_output_size_is_caffes(size, kernel, stride, pad, ceil, any_pad, want):
    assert caffe_layers.pooling_output_size(size, kernel, stride, pad, ceil, any_pad) == want
