"""The in-memory Caffe net (caffe_io.schema) against expectations written out by hand: Caffe's V1 -> V2 layer
upgrade (upgrade_proto.cpp: UpgradeV1LayerType and the param/blobs_lr/weight_decay fold), Blob::FromProto's
shape rules (legacy num/channels/height/width win, missing ones are 0), the input shape a deploy net declares,
and the exact one-line errors for messages Caffe refuses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from senet_zoo.converters import caffe_io, caffe_pb2
from senet_zoo.converters.caffe_io import schema
from senet_zoo.errors import SenetZooError

V1 = caffe_pb2.V1LayerParameter
P = caffe_pb2.LayerParameter
STRICT, PERMISSIVE = caffe_pb2.ParamSpec.STRICT, caffe_pb2.ParamSpec.PERMISSIVE

# Caffe's UpgradeV1LayerType, V1 enum name -> V2 type string (upgrade_proto.cpp)
CAFFE_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
    "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power",
    "RELU": "ReLU", "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


def refused(fn, *args) -> SenetZooError:
    with pytest.raises(SenetZooError) as info:
        fn(*args)
    assert info.value.exit_code == 2
    return info.value


def net_of(*layers, **header) -> caffe_io.CaffeNet:
    return caffe_io.net_from_proto(caffe_pb2.NetParameter(layer=list(layers), **header), "n.prototxt")


def blob(*values, dims=None, **legacy) -> caffe_pb2.BlobProto:
    b = caffe_pb2.BlobProto(data=list(values), **legacy)
    if dims is not None:
        b.shape.dim.extend(dims)
    return b


# --- the dataclasses ---------------------------------------------------------------------------------------------


def test_layer_lookup_messages():
    net = caffe_io.CaffeNet("n", [caffe_io.CaffeLayer(name, "ReLU", [], [], []) for name in ("conv1", "fc")],
                            Path("m.caffemodel"))
    assert net.layer("fc") is net.layers[1]
    err = refused(net.layer, "fc7")
    assert (err.path, err.message) == ("m.caffemodel", "has no layer named 'fc7' (2 layers); did you mean 'fc'?")
    assert refused(net.layer, "xyz").message == "has no layer named 'xyz' (2 layers)"


def test_param_layers_and_legacy_shape():
    a = caffe_io.CaffeLayer("a", "Convolution", [], [], [np.zeros(1, np.float32)], legacy_shapes=(False, True))
    b = caffe_io.CaffeLayer("b", "ReLU", [], [], [])
    c = caffe_io.CaffeLayer("c", "Scale", [], [], [np.zeros(1, np.float32)])
    assert caffe_io.CaffeNet("n", [a, b, c], Path("x")).param_layers() == [a, c]
    assert [a.legacy_shape(i) for i in range(3)] == [False, True, False]
    assert [c.legacy_shape(i) for i in range(2)] == [False, False]


# --- V1 <-> V2 ---------------------------------------------------------------------------------------------------


def test_every_v1_type_upgrades_to_caffes_name():
    for enum_name, v2_name in CAFFE_V1_TYPES.items():
        v1 = V1(name="l", type=V1.LayerType.Value(enum_name))
        assert schema._upgrade_v1(v1).type == v2_name, enum_name
        assert schema._downgrade_v2(P(name="l", type=v2_name)).type == V1.LayerType.Value(enum_name)
    assert schema._upgrade_v1(V1(name="l", type=V1.NONE)) is None
    assert schema._upgrade_v1(V1(name="l")) is None  # type absent: NONE


def test_upgrade_copies_connections_rules_and_parameters():
    v1 = V1(name="conv", type=V1.CONVOLUTION, bottom=["a", "b"], top=["c"],
            include=[caffe_pb2.NetStateRule(phase=caffe_pb2.TEST)], exclude=[caffe_pb2.NetStateRule(stage=["x"])],
            loss_weight=[0.5, 2.0], convolution_param=caffe_pb2.ConvolutionParameter(num_output=7, kernel_size=[3]),
            transform_param=caffe_pb2.TransformationParameter(scale=0.25))
    expected = P(name="conv", type="Convolution", bottom=["a", "b"], top=["c"],
                 include=[caffe_pb2.NetStateRule(phase=caffe_pb2.TEST)], exclude=[caffe_pb2.NetStateRule(stage=["x"])],
                 loss_weight=[0.5, 2.0], convolution_param=caffe_pb2.ConvolutionParameter(num_output=7, kernel_size=[3]),
                 transform_param=caffe_pb2.TransformationParameter(scale=0.25))
    assert schema._upgrade_v1(v1) == expected
    back = schema._downgrade_v2(expected)
    assert back == v1


@pytest.mark.parametrize("v1_fields, specs", [
    # each of the four lists the longest once: one ParamSpec per index of the longest, fields where given
    (dict(param=["w", "b", ""], blobs_lr=[2.0]),
     [dict(name="w", lr_mult=2.0), dict(name="b"), dict(name="")]),
    (dict(param=["w"], blob_share_mode=[PERMISSIVE, STRICT]),
     [dict(name="w", share_mode=PERMISSIVE), dict(share_mode=STRICT)]),
    (dict(blobs_lr=[1.0, 2.0, 0.0], weight_decay=[0.5]),
     [dict(lr_mult=1.0, decay_mult=0.5), dict(lr_mult=2.0), dict(lr_mult=0.0)]),
    (dict(blob_share_mode=[STRICT], weight_decay=[1.0, 0.0]),
     [dict(share_mode=STRICT, decay_mult=1.0), dict(decay_mult=0.0)]),
    (dict(), []),
])
def test_upgrade_folds_v1_blob_settings_into_param_specs(v1_fields, specs):
    v2 = schema._upgrade_v1(V1(name="l", type=V1.INNER_PRODUCT, **v1_fields))
    assert list(v2.param) == [caffe_pb2.ParamSpec(**s) for s in specs]


def test_downgrade_writes_only_the_blob_settings_some_spec_sets():
    specs = [caffe_pb2.ParamSpec(lr_mult=2.0), caffe_pb2.ParamSpec(decay_mult=0.0)]
    v1 = schema._downgrade_v2(P(name="ip", type="InnerProduct", param=specs))
    assert list(v1.blobs_lr) == [2.0, 1.0] and list(v1.weight_decay) == [1.0, 0.0]  # ParamSpec's defaults are 1
    assert not v1.param and not v1.blob_share_mode
    specs = [caffe_pb2.ParamSpec(name="shared"), caffe_pb2.ParamSpec(share_mode=PERMISSIVE)]
    v1 = schema._downgrade_v2(P(name="ip", type="InnerProduct", param=specs))
    assert list(v1.param) == ["shared", ""] and list(v1.blob_share_mode) == [STRICT, PERMISSIVE]
    assert not v1.blobs_lr and not v1.weight_decay


def test_downgrade_of_a_type_v1_cannot_name():
    layer = P(name="bn", type="BatchNorm", bottom=["x"], top=["y"], loss_weight=[1.0],
              include=[caffe_pb2.NetStateRule(phase=caffe_pb2.TRAIN)],
              exclude=[caffe_pb2.NetStateRule(min_level=2)],
              param=[caffe_pb2.ParamSpec(lr_mult=0.0)], transform_param=caffe_pb2.TransformationParameter(scale=2),
              batch_norm_param=caffe_pb2.BatchNormParameter(eps=1e-3))
    assert schema._downgrade_v2(layer) == V1(
        name="bn", type=V1.NONE, bottom=["x"], top=["y"], loss_weight=[1.0],
        include=[caffe_pb2.NetStateRule(phase=caffe_pb2.TRAIN)], exclude=[caffe_pb2.NetStateRule(min_level=2)])


def test_v1_net_reads_as_caffe_upgrades_it():
    proto = caffe_pb2.NetParameter(name="old", layers=[
        V1(name="conv", type=V1.CONVOLUTION, bottom=["data"], top=["conv"], blobs_lr=[1, 2],
           blobs=[blob(1.0, 2.0, num=1, channels=1, height=1, width=2), blob(0.5, dims=[1])]),
        V1(name="mystery", bottom=["conv"], top=["out"], blobs=[blob(3.0, dims=[1])]),
    ], input=["data"], input_dim=[1, 1, 1, 4])
    net = caffe_io.net_from_proto(proto, "v1.caffemodel")
    conv, mystery = net.layers
    assert (conv.name, conv.type, conv.bottoms, conv.tops) == ("conv", "Convolution", ["data"], ["conv"])
    assert conv.proto == P(name="conv", type="Convolution", bottom=["data"], top=["conv"],
                           param=[caffe_pb2.ParamSpec(lr_mult=1), caffe_pb2.ParamSpec(lr_mult=2)])
    assert [b.tolist() for b in conv.blobs] == [[[[[1.0, 2.0]]]], [0.5]] and conv.legacy_shapes == (True, False)
    assert (mystery.name, mystery.type, mystery.proto, mystery.bottoms, mystery.tops) == (
        "mystery", "", None, ["conv"], ["out"])
    assert net.input_shape == (1, 1, 1, 4)


# --- blobs ------------------------------------------------------------------------------------------------------


def test_blob_shapes_as_caffe_reads_them():
    layer = P(name="c", type="Convolution", blobs=[
        blob(*range(6), dims=[2, 3]),
        blob(*range(6), num=1, channels=2, height=1, width=3, dims=[6]),  # legacy fields win over shape
        blob(width=3),  # legacy fields that are absent are 0
        blob(3.5, dims=[]),  # no dims: a scalar
        blob(dims=[0, 4]),
    ])
    got = net_of(layer).layers[0]
    assert [b.shape for b in got.blobs] == [(2, 3), (1, 2, 1, 3), (0, 0, 0, 3), (), (0, 4)]
    assert got.legacy_shapes == (False, True, True, False, False)
    assert got.blobs[0].tolist() == [[0, 1, 2], [3, 4, 5]] and got.blobs[3].tolist() == 3.5
    for b in got.blobs:
        assert b.dtype == np.float32 and b.flags.c_contiguous
    assert got.proto == P(name="c", type="Convolution")  # the message without its blobs


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_double_data_wins_and_is_rounded_to_float32():
    b = caffe_pb2.BlobProto(data=[5.0], double_data=[0.1, 1e300, -2.5])
    b.shape.dim.append(3)
    got = net_of(P(name="d", blobs=[b])).layers[0].blobs[0]
    assert got.dtype == np.float32
    assert got.view(np.uint32).tolist() == [0x3DCCCCCD, 0x7F800000, 0xC0200000]


@pytest.mark.parametrize("b, message", [
    (blob(1.0, 2.0, dims=[-1, 3]), "negative dimension in blob shape -1x3"),
    (blob(num=-2), "negative dimension in blob shape -2x0x0x0"),
    (blob(1.0, 2.0, 3.0, 4.0, 5.0, dims=[2, 3]), "5 values for blob shape 2x3 (6 values)"),
    (blob(1.0, 2.0, num=0, dims=[2]), "2 values for blob shape 0x0x0x0 (0 values)"),  # num present: legacy
    (blob(), "0 values for blob shape scalar (1 values)"),
    (blob(1.0, 2.0), "2 values for blob shape scalar (1 values)"),
])
def test_bad_blob_shapes(b, message):
    proto = caffe_pb2.NetParameter(layer=[P(name="ok", blobs=[blob(1.0, dims=[1])]),
                                          P(name="conv", blobs=[blob(1.0, dims=[1]), b])])
    err = refused(caffe_io.net_from_proto, proto, "w.caffemodel")
    assert (err.path, err.message) == ("w.caffemodel", f"layer 1 'conv' blob 1: {message}")


def test_the_callers_message_keeps_its_blobs():
    layer = P(name="c", blobs=[blob(1.0, dims=[1])])
    proto = caffe_pb2.NetParameter(layer=[layer])
    net = caffe_io.net_from_proto(proto)
    assert len(proto.layer[0].blobs) == 1 and len(net.layers[0].proto.blobs) == 0
    assert net.source == Path("<memory>")


def test_as_array():
    a = np.arange(6, dtype=np.float64).reshape(2, 3).T
    got = schema._as_array(a, np.float32)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.tolist() == [[0, 3], [1, 4], [2, 5]]
    assert schema._as_array(np.float64(2.5), np.float32).shape == ()
    same = np.ones((2, 2), np.float32)
    assert schema._as_array(same, np.float32) is same
    assert schema._shape_str((2, 3, 4)) == "2x3x4" and schema._shape_str(()) == "scalar"
    assert schema._shape_str((0,)) == "0"


# --- text that is not UTF-8 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, field, shown", [
    (b"\x0a\x02\xff\x31", "name", "b'\\xff1'"),                        # name
    (b"\x0a\x01c\x1a\x01a\x1a\x02\xfe\x31", "bottom", "b'\\xfe1'"),    # the second of a repeated string
    (b"\x0a\x01c\x42\x03\x22\x01\xff", "stage", "b'\\xff'"),          # inside include { stage }
    (b"\x0a\x28" + b"\xff" * 40, "name", repr(b"\xff" * 32)),          # shown cut to 32 bytes
])
def test_layer_text_that_is_not_utf8(raw, field, shown):
    ok = P(name="fine", type="ReLU", bottom=["x"])
    proto = caffe_pb2.NetParameter(layer=[ok, P.FromString(raw)])
    err = refused(caffe_io.net_from_proto, proto, "bad.caffemodel")
    assert (err.path, err.message) == ("bad.caffemodel", f"layer 1: field '{field}' is not UTF-8 text ({shown})")


def test_v1_and_header_text_that_is_not_utf8():
    proto = caffe_pb2.NetParameter(layers=[V1.FromString(b"\x22\x02\xff\x31")])
    assert refused(caffe_io.net_from_proto, proto).message == "layer 0: field 'name' is not UTF-8 text (b'\\xff1')"
    header = caffe_pb2.NetParameter.FromString(b"\x1a\x02\xc3\x28")  # input: "\xc3\x28"
    header.layer.append(P(name="x"))
    err = refused(caffe_io.net_from_proto, header, "h.caffemodel")
    assert (err.path, err.message) == ("h.caffemodel", "the net header: field 'input' is not UTF-8 text (b'\\xc3(')")


# --- the net ------------------------------------------------------------------------------------------------------


def test_both_layer_fields():
    proto = caffe_pb2.NetParameter(layer=[P(name="a")], layers=[V1(name="b")])
    err = refused(caffe_io.net_from_proto, proto, "both.prototxt")
    assert (err.path, err.message) == ("both.prototxt",
                                       "has both V2 'layer' and V1 'layers' fields; Caffe refuses such a net")


@pytest.mark.parametrize("field, message", [("layer", P), ("layers", V1)])
def test_layer_count_limit(field, message):
    proto = caffe_pb2.NetParameter()
    getattr(proto, field).extend([message(name="l")] * caffe_io.MAX_LAYERS)
    assert len(caffe_io.net_from_proto(proto).layers) == 10_000
    getattr(proto, field).add(name="one more")
    err = refused(caffe_io.net_from_proto, proto, "big.caffemodel")
    assert (err.path, err.message) == ("big.caffemodel",
                                       "declares 10001 layers, more than any Caffe net (10000 at most)")


def test_header_is_kept_without_its_layers():
    proto = caffe_pb2.NetParameter(name="n", input=["data"], input_dim=[1, 3, 4, 4], force_backward=True,
                                   layer=[P(name="relu", type="ReLU", bottom=["data"], top=["data"])])
    net = caffe_io.net_from_proto(proto, "h.prototxt")
    assert net.name == "n" and net.source == Path("h.prototxt")
    assert net.proto == caffe_pb2.NetParameter(name="n", input=["data"], input_dim=[1, 3, 4, 4], force_backward=True)
    assert len(proto.layer) == 1


def _input_layer(*shapes, type="Input"):
    return P(name="in", type=type, top=["data"],
             input_param=caffe_pb2.InputParameter(shape=[caffe_pb2.BlobShape(dim=s) for s in shapes]))


@pytest.mark.parametrize("layers, header, expected", [
    ([_input_layer([1, 3, 8, 8], [1, 5])], dict(input_dim=[9, 9, 9, 9]), (1, 3, 8, 8)),   # the first shape
    ([P(name="r", type="ReLU"), _input_layer([2, 3])], {}, (2, 3)),                        # any layer
    ([_input_layer()], dict(input_shape=[caffe_pb2.BlobShape(dim=[2, 3, 4, 5])]), (2, 3, 4, 5)),
    ([_input_layer([1, 1], type="Data")], {}, None),                                       # only an Input
    ([_input_layer([1, 1], type="Data")], dict(input_shape=[caffe_pb2.BlobShape(dim=[7])]), (7,)),
    ([P(name="r")], dict(input_shape=[caffe_pb2.BlobShape(dim=[6]), caffe_pb2.BlobShape(dim=[5])],
                         input_dim=[1, 2, 3, 4]), (6,)),
    ([P(name="r")], dict(input_dim=[1, 3, 224, 224]), (1, 3, 224, 224)),
    ([P(name="r")], dict(input_dim=[1, 3, 224, 224, 2, 1, 1, 1]), (1, 3, 224, 224)),  # the first of two inputs
    ([P(name="r")], dict(input_dim=[1, 3, 224]), None),
    ([P(name="r")], {}, None),
])
def test_input_shape(layers, header, expected):
    assert net_of(*layers, **header).input_shape == expected


# --- back to messages ---------------------------------------------------------------------------------------------


def test_layer_messages_take_the_dataclass_fields():
    proto = P(name="old", type="Convolution", bottom=["a"], top=["b"], blobs=[blob(1.0, dims=[1])],
              convolution_param=caffe_pb2.ConvolutionParameter(num_output=3))
    layers = [
        caffe_io.CaffeLayer("new", "Deconvolution", ["x", "y"], ["z"], [], proto),
        caffe_io.CaffeLayer("", "", [], ["t"], [], proto),
        caffe_io.CaffeLayer("bare", "ReLU", ["i"], ["o"], [np.zeros(1, np.float32)], None),
    ]
    header = caffe_pb2.NetParameter(name="hdr", input=["data"], layer=[P(name="stale")], layers=[V1(name="s")])
    out = caffe_io.net_to_proto(caffe_io.CaffeNet("n", layers, Path("x"), proto=header))
    assert out == caffe_pb2.NetParameter(name="n", input=["data"], layer=[
        P(name="new", type="Deconvolution", bottom=["x", "y"], top=["z"],
          convolution_param=caffe_pb2.ConvolutionParameter(num_output=3)),
        P(top=["t"], convolution_param=caffe_pb2.ConvolutionParameter(num_output=3)),
        P(name="bare", type="ReLU", bottom=["i"], top=["o"]),
    ])
    assert not out.layer[1].HasField("name") and not out.layer[1].HasField("type")
    assert len(proto.blobs) == 1 and proto.name == "old"  # the layer's own message is left alone


def test_net_header_name():
    header = caffe_pb2.NetParameter(name="kept?", input=["data"])
    out = caffe_io.net_to_proto(caffe_io.CaffeNet("", [], Path("x"), proto=header))
    assert out == caffe_pb2.NetParameter(input=["data"]) and not out.HasField("name")
    assert caffe_io.net_to_proto(caffe_io.CaffeNet("m", [], Path("x"))) == caffe_pb2.NetParameter(name="m")
    assert header.name == "kept?"
