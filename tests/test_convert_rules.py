"""converters/convert.py rule by rule, on hand-built layers, nets and folders (issue 18: its mutants).

Every expectation is written out: the hyper-parameters Caffe reads from a layer message (with caffe.proto's
defaults), the blobs Caffe's own layers hold, the state dict a tiny hand-built net converts to, the exact
one-line errors, and what one real conversion writes. Only one test converts a whole (seeded) release.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from senet_zoo import registry
from senet_zoo.converters import caffe_pb2
from senet_zoo.converters import convert as cv
from senet_zoo.converters.caffe_io import CaffeLayer, CaffeNet, net_from_proto
from senet_zoo.converters.release_layout import Layer, net_parameter, parameter_layers
from senet_zoo.errors import SenetZooError

f32 = np.float32
KNOWN = ("Axpy, BatchNorm, Concat, Convolution, Dropout, InnerProduct, Input, Pooling, ReLU, Reshape, Scale, "
         "Sigmoid, Softmax")


def message(call, *args, **kwargs) -> str:
    with pytest.raises(SenetZooError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------ hyper-parameters of a message

def conv_proto(**fields) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name="c", type="Convolution")
    for key, value in fields.items():
        target = getattr(layer.convolution_param, key)
        target.extend(value) if isinstance(value, list) else setattr(layer.convolution_param, key, value)
    return layer


def test_conv_param_reads_caffe_fields_and_defaults():
    assert cv._conv_param(conv_proto(num_output=8, kernel_size=[3], stride=[2], pad=[1], group=4,
                                     bias_term=False)) == {
        "num_output": 8, "kernel": 3, "stride": 2, "pad": 1, "group": 4, "bias_term": False}
    # caffe.proto: no stride/pad -> 1/0, group 1, bias_term true; a kernel_size-less message reads as 1
    assert cv._conv_param(conv_proto(num_output=8)) == {
        "num_output": 8, "kernel": 1, "stride": 1, "pad": 0, "group": 1, "bias_term": True}
    # repeated fields: the first value is the height (and the one compared)
    got = cv._conv_param(conv_proto(num_output=2, kernel_size=[7, 9], stride=[3, 5], pad=[4, 6]))
    assert (got["kernel"], got["stride"], got["pad"]) == (7, 3, 4)
    # the explicit _h fields win
    got = cv._conv_param(conv_proto(num_output=2, kernel_h=5, kernel_w=5, stride_h=3, stride_w=3, pad_h=2, pad_w=2))
    assert (got["kernel"], got["stride"], got["pad"]) == (5, 3, 2)


def test_expected_conv_reads_our_layout():
    layer = Layer("c", "Convolution", (), (), {"convolution_param": {
        "num_output": 8, "bias_term": False, "kernel_size": [3, 5], "stride": [2, 4], "pad": [1, 6], "group": 4}})
    assert cv._expected_conv(layer) == {"num_output": 8, "kernel": 3, "stride": 2, "pad": 1, "group": 4,
                                        "bias_term": False}
    plain = Layer("c", "Convolution", (), (), {"convolution_param": {
        "num_output": 8, "bias_term": True, "kernel_size": [1], "stride": [1]}})
    assert cv._expected_conv(plain) == {"num_output": 8, "kernel": 1, "stride": 1, "pad": 0, "group": 1,
                                        "bias_term": True}


def test_affine_param_of_messages():
    ip = caffe_pb2.LayerParameter(name="fc", type="InnerProduct")
    ip.inner_product_param.num_output = 10
    assert cv._affine_param("InnerProduct", ip) == {"num_output": 10, "bias_term": True, "transpose": False,
                                                    "axis": 1}
    ip.inner_product_param.bias_term = False
    ip.inner_product_param.transpose = True
    ip.inner_product_param.axis = 2
    assert cv._affine_param("InnerProduct", ip) == {"num_output": 10, "bias_term": False, "transpose": True,
                                                    "axis": 2}
    scale = caffe_pb2.LayerParameter(name="s", type="Scale")
    assert cv._affine_param("Scale", scale) == {"bias_term": False, "axis": 1, "num_axes": 1}
    scale.scale_param.bias_term = True
    scale.scale_param.axis = 0
    scale.scale_param.num_axes = 2
    assert cv._affine_param("Scale", scale) == {"bias_term": True, "axis": 0, "num_axes": 2}


def test_affine_param_of_our_layout():
    def ip(**p):
        return Layer("fc", "InnerProduct", (), (), {"inner_product_param": {"num_output": 10, **p}})

    assert cv._affine_param("InnerProduct", None, ip()) == {"num_output": 10, "bias_term": True,
                                                            "transpose": False, "axis": 1}
    assert cv._affine_param("InnerProduct", None, ip(bias_term=False))["bias_term"] is False
    scale = Layer("s", "Scale", (), (), {"scale_param": {}})
    assert cv._affine_param("Scale", None, scale) == {"bias_term": False, "axis": 1, "num_axes": 1}
    scale = Layer("s", "Scale", (), (), {"scale_param": {"bias_term": True, "axis": 2}})
    assert cv._affine_param("Scale", None, scale) == {"bias_term": True, "axis": 2, "num_axes": 1}


def pool_proto(**fields) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name="p", type="Pooling")
    for key, value in fields.items():
        setattr(layer.pooling_param, key, value)
    return layer


def test_pool_param_of_messages():
    assert cv._pool_param(pool_proto(pool=caffe_pb2.PoolingParameter.AVE, global_pooling=True)) == {
        "pool": "AVE", "global": True}
    assert cv._pool_param(pool_proto(kernel_size=3, stride=2, pad=1)) == {
        "pool": "MAX", "kernel": 3, "stride": 2, "pad": 1}                     # MAX: caffe.proto's default
    assert cv._pool_param(pool_proto(pool=caffe_pb2.PoolingParameter.AVE, kernel_size=7)) == {
        "pool": "AVE", "kernel": 7, "stride": 1, "pad": 0}                     # stride 1, pad 0 by default
    assert cv._pool_param(pool_proto(kernel_size=9, kernel_h=5, kernel_w=5, stride=8, stride_h=3, stride_w=3,
                                     pad=7, pad_h=2, pad_w=2)) == {"pool": "MAX", "kernel": 5, "stride": 3, "pad": 2}


def test_expected_pool_of_our_layout():
    def pool(**p):
        return Layer("p", "Pooling", (), (), {"pooling_param": p})

    assert cv._expected_pool(pool(pool="AVE", global_pooling=True)) == {"pool": "AVE", "global": True}
    assert cv._expected_pool(pool(pool="MAX", kernel_size=3, stride=2)) == {"pool": "MAX", "kernel": 3,
                                                                            "stride": 2, "pad": 0}
    assert cv._expected_pool(pool(pool="MAX", kernel_size=3, stride=2, pad=1, global_pooling=False)) == {
        "pool": "MAX", "kernel": 3, "stride": 2, "pad": 1}


# -------------------------------------------------------------------------------------------- check_topology

R50 = registry.get("se_resnet50")
DEPLOY = Path("deploy.prototxt")


@pytest.fixture(scope="module")
def r50_proto():
    return net_parameter("se_resnet50")


def edited(proto, which, edit=None, **fields):
    """A copy of ``proto`` with layer ``which`` changed by ``edit(layer)`` and ``fields``, as a net."""
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(proto)
    layer = next(l for l in copy.layer if l.name == which)
    for key, value in fields.items():
        setattr(layer, key, value)
    if edit is not None:
        edit(layer)
    return net_from_proto(copy, DEPLOY)


def test_release_topology_passes(r50_proto):
    assert cv.check_topology(net_from_proto(r50_proto, DEPLOY), R50) is None


def test_unknown_layer_type_is_named(r50_proto):
    net = edited(r50_proto, "conv1/relu_7x7_s2", type="PReLU")
    assert message(cv.check_topology, net, R50) == (
        f"deploy.prototxt: layer 'conv1/relu_7x7_s2' has type 'PReLU', which is not part of the release's "
        f"deploy networks ({KNOWN})")


def test_missing_parameter_layer_is_named(r50_proto):
    net = edited(r50_proto, "conv2_1_3x3", name="conv2_1_3x3_renamed")
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: has no layer 'conv2_1_3x3', which SE-ResNet-50 needs (is this the prototxt of another "
        "model?)")


def test_parameter_layer_of_another_type_is_named(r50_proto):
    net = edited(r50_proto, "conv2_1_3x3", type="InnerProduct")
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: layer 'conv2_1_3x3' is a InnerProduct, SE-ResNet-50 has a Convolution there")


def test_convolution_hyper_parameters_must_match(r50_proto):
    def stride2(layer):
        layer.convolution_param.stride[0] = 2

    net = edited(r50_proto, "conv2_1_3x3", stride2)
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: layer 'conv2_1_3x3': {'num_output': 64, 'kernel': 3, 'stride': 2, 'pad': 1, 'group': 1, "
        "'bias_term': False} differs from SE-ResNet-50's {'num_output': 64, 'kernel': 3, 'stride': 1, 'pad': 1, "
        "'group': 1, 'bias_term': False}")


def test_inner_product_and_scale_fields_must_match(r50_proto):
    def transpose(layer):
        layer.inner_product_param.transpose = True

    net = edited(r50_proto, "classifier", transpose)
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: layer 'classifier': {'num_output': 1000, 'bias_term': True, 'transpose': True, 'axis': 1} "
        "differs from SE-ResNet-50's {'num_output': 1000, 'bias_term': True, 'transpose': False, 'axis': 1}")

    def two_axes(layer):
        layer.scale_param.num_axes = 2

    net = edited(r50_proto, "conv2_1_3x3/bn/scale", two_axes)
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: layer 'conv2_1_3x3/bn/scale': {'bias_term': True, 'axis': 1, 'num_axes': 2} differs from "
        "SE-ResNet-50's {'bias_term': True, 'axis': 1, 'num_axes': 1}")


def test_pooling_layers_are_counted_and_compared_in_order(r50_proto):
    copy = caffe_pb2.NetParameter()
    copy.CopyFrom(r50_proto)
    extra = copy.layer.add()
    extra.CopyFrom(next(l for l in copy.layer if l.name == "pool5/7x7_s1"))
    extra.name, extra.top[0] = "pool6", "pool6"
    assert message(cv.check_topology, net_from_proto(copy, DEPLOY), R50) == (
        "deploy.prototxt: has 19 Pooling layers, SE-ResNet-50 has 18")

    def pad1(layer):
        layer.pooling_param.pad = 1

    net = edited(r50_proto, "pool1/3x3_s2", pad1)
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: Pooling layer 'pool1/3x3_s2': {'pool': 'MAX', 'kernel': 3, 'stride': 2, 'pad': 1} differs "
        "from {'pool': 'MAX', 'kernel': 3, 'stride': 2, 'pad': 0}")

    def local(layer):
        layer.pooling_param.global_pooling = False
        layer.pooling_param.kernel_size = 56

    net = edited(r50_proto, "conv2_1_global_pool", local)
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: Pooling layer 'conv2_1_global_pool': {'pool': 'AVE', 'kernel': 56, 'stride': 1, 'pad': 0} "
        "differs from {'pool': 'AVE', 'global': True}")


@pytest.mark.parametrize("mode, refused", [(caffe_pb2.PoolingParameter.FLOOR, True),
                                           (caffe_pb2.PoolingParameter.CEIL, False)])
def test_only_a_floor_round_mode_is_refused(r50_proto, mode, refused):
    def rounding(layer):
        layer.pooling_param.round_mode = mode

    net = edited(r50_proto, "conv3_2_global_pool", rounding)
    if not refused:
        assert cv.check_topology(net, R50) is None
        return
    assert message(cv.check_topology, net, R50) == (
        "deploy.prototxt: Pooling layer 'conv3_2_global_pool' rounds down (round_mode: FLOOR); the release's "
        "networks round up")


# --------------------------------------------------------------------------------------------- small helpers

def bn_layer(name, eps=None, with_proto=True):
    proto = None
    if with_proto:
        proto = caffe_pb2.LayerParameter(name=name, type="BatchNorm")
        if eps is not None:
            proto.batch_norm_param.eps = eps
    return CaffeLayer(name, "BatchNorm" if with_proto else "", [], [], [], proto)


def net_of(*layers, source="w.caffemodel"):
    return CaffeNet("n", list(layers), Path(source))


def test_bn_eps_prototxt_first_then_caffemodel_then_caffe_default():
    deploy = net_of(bn_layer("other", 0.75), bn_layer("bn", 0.5), source="d.prototxt")
    weights = net_of(bn_layer("other", 0.125), bn_layer("bn", 0.25))
    assert cv._bn_eps("bn", deploy, weights) == 0.5
    assert cv._bn_eps("bn", None, weights) == 0.25
    assert cv._bn_eps("bn", deploy, None) == 0.5
    assert cv._bn_eps("bn", net_of(bn_layer("bn", with_proto=False)), weights) == 0.25   # HDF5: no message
    assert cv._bn_eps("bn", None, net_of(bn_layer("bn", with_proto=False))) == 1e-5
    assert cv._bn_eps("bn") == 1e-5
    # a message without eps: caffe.proto's default, 1e-5 as a float field
    assert cv._bn_eps("bn", None, net_of(bn_layer("bn"))) == float(np.float32(1e-5)) != 1e-5
    assert cv._bn_eps("bn", net_of(bn_layer("else", 0.5)), weights) == 0.25


def test_describe_blobs_and_shapes():
    assert cv._fmt((2, 3, 1)) == "2x3x1"
    assert cv._fmt(()) == "scalar"
    assert cv._describe_blobs([np.zeros((3, 4)), np.zeros(()), np.zeros(5)]) == "3x4, scalar, 5"
    assert cv._describe_blobs([]) == "none"


def test_two_parameter_layers_of_one_name_are_refused():
    a = CaffeLayer("fc", "InnerProduct", [], [], [np.zeros((2, 3), np.float32), np.zeros(2, np.float32)])
    b = CaffeLayer("fc", "InnerProduct", [], [], [np.zeros(4, np.float32)])
    c = CaffeLayer("conv", "Convolution", [], [], [np.zeros((1, 1, 1, 1), np.float32)])
    free = CaffeLayer("relu", "ReLU", [], [], [])
    assert message(cv.param_layers_by_name, net_of(a, free, b)) == (
        "w.caffemodel: has two parameter layers named 'fc' (blobs 2x3, 2 and 4); which weights it holds is "
        "ambiguous")
    layers = cv.param_layers_by_name(net_of(a, free, c))
    assert list(layers) == ["fc", "conv"] and layers["fc"] is a and layers["conv"] is c


# ------------------------------------------------------------------------------------------- Caffe's blobs

def conv(name, module, bias):
    return Layer(name, "Convolution", (), (), {"convolution_param": {"bias_term": bias}}, module)


def test_caffe_blob_shapes_of_each_parameter_layer():
    shapes = {"c.weight": (4, 3, 1, 1), "c.bias": (4,), "fc.weight": (10, 4), "fc.bias": (10,),
              "bn.running_mean": (4,), "bn.running_var": (4,), "bn.weight": (4,), "bn.bias": (4,)}
    assert cv.caffe_blob_shapes(conv("c", "c", True), shapes) == [("weight", (4, 3, 1, 1)), ("bias", (4,))]
    assert cv.caffe_blob_shapes(conv("c", "c", False), shapes) == [("weight", (4, 3, 1, 1))]
    ip = Layer("fc", "InnerProduct", (), (), {"inner_product_param": {"num_output": 10}}, "fc")
    assert cv.caffe_blob_shapes(ip, shapes) == [("weight", (10, 4)), ("bias", (10,))]   # bias_term: true
    ip = Layer("fc", "InnerProduct", (), (), {"inner_product_param": {"num_output": 10, "bias_term": False}}, "fc")
    assert cv.caffe_blob_shapes(ip, shapes) == [("weight", (10, 4))]
    bn = Layer("b", "BatchNorm", (), (), {}, "bn")
    assert cv.caffe_blob_shapes(bn, shapes) == [("mean", (4,)), ("variance", (4,)), ("scale factor", (1,))]
    scale = Layer("s", "Scale", (), (), {"scale_param": {}}, "bn")
    assert cv.caffe_blob_shapes(scale, shapes) == [("scale", (4,))]                  # bias_term: false
    scale = Layer("s", "Scale", (), (), {"scale_param": {"bias_term": True}}, "bn")
    assert cv.caffe_blob_shapes(scale, shapes) == [("scale", (4,)), ("bias", (4,))]


def test_shape_equals_is_blob_shape_equals():
    assert cv.shape_equals(np.zeros((1, 1, 1, 5)), True, (5,))
    assert cv.shape_equals(np.zeros((1, 1, 2, 5)), True, (2, 5))
    assert cv.shape_equals(np.zeros((1, 2, 3, 4)), True, (1, 2, 3, 4))            # four axes: equal
    assert not cv.shape_equals(np.zeros((1, 1, 1, 5)), True, (1, 5, 1))
    assert not cv.shape_equals(np.zeros((1, 1, 1, 1)), True, (1, 1, 1, 1, 1))     # more than 4 axes never
    assert not cv.shape_equals(np.zeros((1, 1, 1, 5)), False, (5,))              # new-style shapes: exactly
    assert cv.shape_equals(np.zeros((2, 5)), False, (2, 5))
    assert not cv.shape_equals(np.zeros((5, 2)), False, (2, 5))


def test_check_blobs_names_count_and_shape():
    want = [("weight", (3, 2)), ("bias", (3,))]
    one = CaffeLayer("fc", "InnerProduct", [], [], [np.zeros((3, 2), np.float32)])
    assert message(cv.check_blobs, one, want, "tiny", Path("w.caffemodel")) == (
        "w.caffemodel: layer 'fc' has 1 blobs (3x2), tiny's needs 2 (weight 3x2, bias 3); Caffe refuses to load "
        "such a file")
    wrong = CaffeLayer("fc", "InnerProduct", [], [], [np.zeros((3, 2), np.float32), np.zeros(4, np.float32)])
    assert message(cv.check_blobs, wrong, want, "tiny", Path("w.caffemodel")) == (
        "w.caffemodel: layer 'fc' blob 1 (bias) has shape 4, tiny needs 3; Caffe refuses to load such a file")
    legacy = CaffeLayer("fc", "InnerProduct", [], [], [np.zeros((3, 2), np.float32),
                                                       np.zeros((1, 1, 1, 3), np.float32)], None, (False, True))
    assert cv.check_blobs(legacy, want, "tiny", Path("w.caffemodel")) is None
    # the legacy flag is per blob: the first blob's is not the second's
    flipped = dataclasses.replace(legacy, blobs=[np.zeros((1, 1, 3, 2), f32), legacy.blobs[1]],
                                  legacy_shapes=(True, False))
    assert "blob 1 (bias) has shape 1x1x1x3" in message(cv.check_blobs, flipped, want, "tiny", Path("w"))


# --------------------------------------------------------------------------------- map_layers on a tiny net

# conv1 (first convolution: BGR -> RGB), bn1 (BatchNorm + Scale), conv2 (with bias), fc (rows re-ordered)
WANTED = [
    conv("conv_a", "conv1", False),
    Layer("bn_a", "BatchNorm", (), (), {"batch_norm_param": {}}, "bn1"),
    Layer("sc_a", "Scale", (), (), {"scale_param": {"bias_term": True}}, "bn1"),
    conv("conv_b", "conv2", True),
    Layer("fc", "InnerProduct", (), (), {"inner_product_param": {"num_output": 3}}, "fc"),
]
SHAPES = {"conv1.weight": (2, 3, 1, 1), "bn1.weight": (2,), "bn1.bias": (2,), "bn1.running_mean": (2,),
          "bn1.running_var": (2,), "bn1.num_batches_tracked": (), "conv2.weight": (2, 2, 1, 1), "conv2.bias": (2,),
          "fc.weight": (3, 2), "fc.bias": (3,)}
def tiny_layers(bn_eps=None):
    def layer(name, type_, blobs, message=True):
        proto = caffe_pb2.LayerParameter(name=name, type=type_) if message else None
        if proto is not None and bn_eps is not None and type_ == "BatchNorm":
            proto.batch_norm_param.eps = bn_eps
        return CaffeLayer(name, type_ if message else "", [], [], [np.asarray(b, f32) for b in blobs], proto)

    return [
        layer("conv_a", "Convolution", [np.arange(6).reshape(2, 3, 1, 1)]),
        layer("relu", "ReLU", []),
        layer("bn_a", "BatchNorm", [[2, 4], [6, 8], [2]]),          # mean·s, var·s, s = 2
        layer("sc_a", "Scale", [[0.5, 1.5], [0.25, -0.25]], message=False),   # as in an HDF5 file: no type
        layer("conv_b", "Convolution", [np.arange(4).reshape(2, 2, 1, 1) + 10, [1, 2]]),
        layer("fc", "InnerProduct", [np.arange(6).reshape(3, 2), [7, 8, 9]]),
    ]


def tiny(bn_eps=None, drop=(), add=()):
    return net_of(*[l for l in tiny_layers(bn_eps) if l.name not in drop], *add)


def test_tiny_net_maps_to_the_state_written_out():
    state = cv.map_layers(tiny(), WANTED, SHAPES, "tiny", row_order=np.array([2, 0, 1]))
    expected = {
        "conv1.weight": [[[[2]], [[1]], [[0]]], [[[5]], [[4]], [[3]]]],   # first conv: input channels reversed
        "bn1.weight": [0.5, 1.5], "bn1.bias": [0.25, -0.25], "bn1.running_mean": [1, 2],
        "bn1.running_var": [3, 4], "bn1.num_batches_tracked": 0,
        "conv2.weight": [[[[10]], [[11]]], [[[12]], [[13]]]], "conv2.bias": [1, 2],
        "fc.weight": [[4, 5], [0, 1], [2, 3]], "fc.bias": [9, 7, 8],
    }
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], np.asarray(value), err_msg=key)
        assert state[key].shape == SHAPES[key], key
    # no row order: the classifier as stored
    state = cv.map_layers(tiny(), WANTED, SHAPES, "tiny")
    np.testing.assert_array_equal(state["fc.weight"], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(state["fc.bias"], [7, 8, 9])


def test_tiny_net_batchnorm_eps_from_the_prototxt_then_the_caffemodel():
    # Caffe divides by sqrt(var + eps); BatchNorm2d keeps 1e-5, so the variance carries eps - 1e-5
    deploy = net_of(*tiny_layers(bn_eps=0.5), source="d.prototxt")
    state = cv.map_layers(tiny(bn_eps=0.25), WANTED, SHAPES, "tiny", deploy)
    np.testing.assert_array_equal(state["bn1.running_var"], np.array([3.49999, 4.49999], f32))
    state = cv.map_layers(tiny(bn_eps=0.25), WANTED, SHAPES, "tiny")
    np.testing.assert_array_equal(state["bn1.running_var"], np.array([3.24999, 4.24999], f32))


def test_tiny_net_missing_and_extra_layers():
    assert message(cv.map_layers, tiny(drop=("conv_b", "fc")), WANTED, SHAPES, "tiny",
                   missing_hint=lambda: "; a hint") == (
        "w.caffemodel: is not a tiny caffemodel: 2 of 5 parameter layers are missing, first 'conv_b'; a hint")
    assert message(cv.map_layers, tiny(drop=("bn_a",)), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: is not a tiny caffemodel: 1 of 5 parameter layers are missing, first 'bn_a'")
    zz = CaffeLayer("zz", "Convolution", [], [], [np.zeros((2, 2), f32)])
    aa = CaffeLayer("aa", "Convolution", [], [], [np.zeros(7, f32)])
    assert message(cv.map_layers, tiny(add=(zz,)), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: layer 'zz' (blobs 2x2) is not part of tiny")
    assert message(cv.map_layers, tiny(add=(zz, aa)), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: layer 'aa' (blobs 7) is not part of tiny, nor are 1 more")
    three = CaffeLayer("mm", "Scale", [], [], [np.zeros(1, f32)])
    assert message(cv.map_layers, tiny(add=(zz, three, aa)), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: layer 'aa' (blobs 7) is not part of tiny, nor are 2 more")


def test_tiny_net_layer_type_and_blobs_are_checked_before_anything_is_computed():
    layers = tiny_layers()
    layers[4] = dataclasses.replace(layers[4], type="InnerProduct")
    assert message(cv.map_layers, net_of(*layers), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: layer 'conv_b' is a InnerProduct, tiny has a Convolution there")
    layers = tiny_layers()
    layers[5] = dataclasses.replace(layers[5], blobs=[np.zeros((3, 2), f32), np.zeros(4, f32)])
    assert message(cv.map_layers, net_of(*layers), WANTED, SHAPES, "tiny") == (
        "w.caffemodel: layer 'fc' blob 1 (bias) has shape 4, tiny needs 3; Caffe refuses to load such a file")


def test_tiny_net_state_must_fit_the_module():
    lacks = {k: v for k, v in SHAPES.items() if k != "bn1.num_batches_tracked"}
    assert message(cv.map_layers, tiny(), WANTED, lacks, "tiny") == (
        "w.caffemodel: layer 'sc_a' has a blob for bn1.num_batches_tracked, which tiny lacks")
    other = {**SHAPES, "bn1.weight": (2, 1)}
    assert message(cv.map_layers, tiny(), WANTED, other, "tiny") == (
        "w.caffemodel: layer 'sc_a' has blobs 2, 2; tiny needs 2x1 for bn1.weight")
    ghosts = {**SHAPES, "g1.w": (1,), "g2.w": (1,), "g3.w": (1,), "g4.w": (1,)}
    with pytest.raises(AssertionError, match=r"^no Caffe blob for \['g1.w', 'g2.w', 'g3.w'\]$"):
        cv.map_layers(tiny(), WANTED, ghosts, "tiny")


# ------------------------------------------------------------------------------ map_weights on a real model

def names_net(names):
    return net_of(*[CaffeLayer(n, "", [], [], [np.zeros(1, f32)]) for n in names])


R50_NAMES = [l.name for l in parameter_layers("se_resnet50")]
INCEPTION_NAMES = [l.name for l in parameter_layers("se_bn_inception")]


def test_guess_model_by_parameter_layer_names():
    assert cv._guess_model(names_net(R50_NAMES)) == "se_resnet50"   # se_resnext50_32x4d's names are the same
    assert cv._guess_model(names_net(INCEPTION_NAMES)) == "se_bn_inception"
    assert cv._guess_model(names_net(["a", "b"])) is None
    assert cv._guess_model(names_net([])) is None
    # 180 of 192 names and 8 others: Jaccard 180/200 = 0.9 is not enough, 181/200 is
    extra = [f"x{i}" for i in range(8)]
    assert cv._guess_model(names_net(R50_NAMES[:180] + extra)) is None
    assert cv._guess_model(names_net(R50_NAMES[:181] + extra)) == "se_resnet50"


def test_map_weights_names_the_model_a_caffemodel_looks_like():
    text = message(cv.map_weights, names_net(R50_NAMES), registry.get("se_bn_inception"))
    assert text.startswith("w.caffemodel: is not a SE-BN-Inception caffemodel: ")
    assert text.endswith("; it looks like SE-ResNet-50")
    # a caffemodel of the model itself with a layer missing: no hint
    assert message(cv.map_weights, names_net(R50_NAMES[1:]), R50) == (
        "w.caffemodel: is not a SE-ResNet-50 caffemodel: 1 of 192 parameter layers are missing, first "
        "'conv1/7x7_s2'")
    assert message(cv.map_weights, names_net(["a"]), R50).endswith("first 'conv1/7x7_s2'")


# ------------------------------------------------------------------------------------------- release checks

def test_release_hash():
    ckpt = dataclasses.replace(R50, caffemodel_sha256="ab" * 32)
    assert cv.check_release_hash(ckpt, Path("m.caffemodel"), "ab" * 32, False) is None
    assert cv.check_release_hash(ckpt, Path("m.caffemodel"), "cd" * 32, True) is None
    assert cv.check_release_hash(dataclasses.replace(R50, caffemodel_sha256=None), Path("m"), "cd" * 32,
                                 False) is None
    assert message(cv.check_release_hash, ckpt, Path("m.caffemodel"), "cd" * 32, False) == (
        "m.caffemodel: sha256 cdcdcdcdcdcdcdcd… is not the released SE-ResNet-50.caffemodel (abababababababab…); "
        "pass --allow-unknown-hash to convert it anyway")


def test_find_prototxt_beside_the_caffemodel(tmp_path):
    caffemodel = tmp_path / "SE-ResNet-50.caffemodel"
    assert cv.find_prototxt(R50, caffemodel) is None
    (tmp_path / "SE-ResNet-50.prototxt").mkdir()
    assert cv.find_prototxt(R50, caffemodel) is None                    # a folder of that name is not it
    (tmp_path / "SE-ResNet-50.prototxt").rmdir()
    (tmp_path / "SE-ResNet-50.prototxt").write_text("x")
    assert cv.find_prototxt(R50, caffemodel) == tmp_path / "SE-ResNet-50.prototxt"


# --------------------------------------------------------------------------------------------- output folder

def test_output_folder_that_may_be_replaced(tmp_path):
    assert cv._check_output_folder(tmp_path / "new") is None
    assert cv._check_output_folder(tmp_path / "a" / "b" / "new") is None      # created with its parents
    done = tmp_path / "done"
    done.mkdir()
    (done / "model.safetensors").write_text("x")
    (done / "config.json").write_text("x")
    assert cv._check_output_folder(done) is None
    assert cv._check_output_folder(tmp_path / "empty") is None


def test_output_folder_that_may_not(tmp_path):
    (tmp_path / "file").write_text("x")
    assert message(cv._check_output_folder, tmp_path / "file") == f"{tmp_path}/file: exists and is not a folder"
    busy = tmp_path / "busy"
    busy.mkdir()
    for name in ("model.safetensors", "b.txt", "a.txt"):
        (busy / name).write_text("x")
    assert message(cv._check_output_folder, busy) == (
        f"{busy}: exists and holds other files (a.txt…); give a new or empty folder")
    assert message(cv._check_output_folder, tmp_path / "file" / "x" / "out") == (
        f"{tmp_path}/file: is not a folder: cannot create the output below it")
    (tmp_path / "link").symlink_to(busy)
    assert message(cv._check_output_folder, tmp_path / "link") == (
        f"{tmp_path}/link: is a symbolic link (to {busy}); give the folder itself")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    assert message(cv._check_output_folder, tmp_path / "dangling") == (
        f"{tmp_path}/dangling: is a symbolic link (to {tmp_path}/gone, which does not exist); give the folder itself")


@pytest.mark.parametrize("lacking", ["W_OK", "X_OK"])
def test_output_parent_needs_write_and_search_permission(tmp_path, monkeypatch, lacking):
    """Simulated (the tests may run as root, who may write anywhere): a parent without write or without
    search (x) permission is refused, naming the nearest existing parent."""
    asked = []

    def access(path, mode):
        asked.append(Path(path))
        return not mode & getattr(os, lacking)

    monkeypatch.setattr(os, "access", access)
    assert message(cv._check_output_folder, tmp_path / "a" / "b" / "out") == (
        f"{tmp_path}: is not writable: cannot write the output here")
    assert asked == [tmp_path]


# -------------------------------------------------------------------------------------------------- convert

def test_convert_refuses_missing_files_before_anything(tmp_path):
    out = tmp_path / "out"
    assert message(cv.convert, "se_resnet50", tmp_path / "none.caffemodel", out) == (
        f"{tmp_path}/none.caffemodel: no such file")
    caffemodel = tmp_path / "m.caffemodel"
    caffemodel.write_bytes(b"")
    assert message(cv.convert, "se_resnet50", caffemodel, out, tmp_path / "none.prototxt") == (
        f"{tmp_path}/none.prototxt: no such file")
    (tmp_path / "out").write_text("x")
    assert message(cv.convert, "se_resnet50", caffemodel, out) == f"{out}: exists and is not a folder"


def test_convert_refuses_an_unknown_hash_by_default(tmp_path):
    from senet_zoo.converters import caffe_io

    caffemodel = tmp_path / "m.caffemodel"
    caffe_io.write_caffemodel(names_net(["a"]), caffemodel)
    digest = hashlib.sha256(caffemodel.read_bytes()).hexdigest()
    assert message(cv.convert, "se_resnet50", caffemodel, tmp_path / "out") == (
        f"{caffemodel}: sha256 {digest[:16]}… is not the released SE-ResNet-50.caffemodel "
        f"({R50.caffemodel_sha256[:16]}…); pass --allow-unknown-hash to convert it anyway")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from support.evidence import seeded_release

    folder = tmp_path_factory.mktemp("inception")
    prototxt, caffemodel, net = seeded_release("se_bn_inception", folder / "release", seed=5)
    lines: list[str] = []
    result = cv.convert("se_bn_inception", caffemodel, folder / "out", allow_unknown_hash=True, log=lines.append)
    return prototxt, caffemodel, net, result, lines


def test_convert_result_and_log(converted):
    import torch

    from senet_zoo.models import build

    prototxt, caffemodel, _, result, lines = converted
    digest = hashlib.sha256(caffemodel.read_bytes()).hexdigest()
    with torch.device("meta"):
        model = build("se_bn_inception")
    assert result.model == "se_bn_inception"
    assert result.output == caffemodel.parent.parent / "out"
    assert result.source_sha256 == digest
    assert result.num_tensors == len(model.state_dict())
    assert result.num_parameters == sum(p.numel() for p in model.parameters())   # buffers are not parameters
    # the prototxt beside the caffemodel, under the release's name, is found and checked
    assert lines == [f"{prototxt}: topology matches SE-BN-Inception",
                     f"{caffemodel}: 228 parameter layers, sha256 {digest}"]


def test_convert_writes_config_and_metadata(converted):
    from safetensors import safe_open

    _, caffemodel, net, result, _ = converted
    digest = hashlib.sha256(caffemodel.read_bytes()).hexdigest()
    assert sorted(p.name for p in result.output.iterdir()) == ["config.json", "model.safetensors"]
    raw = (result.output / "config.json").read_bytes()
    assert raw.endswith(b"}\n") and raw.startswith(b'{\n  "architecture": "se_bn_inception",\n  "num_classes"')
    config = json.loads(raw)
    assert config["num_features"] == 1024
    assert config["senet_zoo"] == {"model": "se_bn_inception", "converter_version": "0.2.0",
                                   "source_file": "SE-BN-Inception.caffemodel", "source_sha256": digest,
                                   "class_order": "sorted-wnid"}
    with safe_open(str(result.output / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt", "model": "se_bn_inception", "source_file": "SE-BN-Inception.caffemodel",
                                "source_sha256": digest, "converter_version": "0.2.0", "class_order": "sorted-wnid"}
        weight = f.get_tensor("last_linear.weight")
    # output 0 is n01440764 (tench), row 448 of the devkit-ordered classifier (ILSVRC2012_ID 449)
    classifier = net.layer("fc1").blobs[0] if any(l.name == "fc1" for l in net.layers) else None
    if classifier is None:
        classifier = next(l for l in net.layers if l.type == "InnerProduct").blobs[0]
    np.testing.assert_array_equal(weight[0], classifier[448])
    np.testing.assert_array_equal(weight[1], classifier[449])            # n01443537 (goldfish), ID 450


@pytest.mark.parametrize("error, shown", [(OSError(28, "No space left on device"), "No space left on device"),
                                          (OSError("gone"), "gone")])
def test_convert_write_failure_is_one_line_and_leaves_nothing(converted, tmp_path, monkeypatch, error, shown):
    from senet_zoo.converters import safetensors_out

    _, caffemodel, _, _, _ = converted

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(safetensors_out, "write_safetensors", fail)
    out = tmp_path / "out"
    assert message(cv.convert, "se_bn_inception", caffemodel, out, allow_unknown_hash=True) == (
        f"{out}: cannot write the converted model: {shown}")
    assert list(tmp_path.iterdir()) == []
