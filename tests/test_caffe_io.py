"""Caffe file reading and writing without Caffe: prototxt, binary caffemodel (V2 and legacy V1), HDF5."""
from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from senet_zoo.converters import caffe_io, caffe_pb2
from senet_zoo.converters.caffe_io import wire
from senet_zoo.errors import SenetZooError

RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "senet-release"

# Layer counts per type in the official deploy prototxts (counted from the files).
OFFICIAL_COUNTS = {
    "SE-ResNet-50.prototxt": dict(Convolution=85, BatchNorm=53, Scale=53, Axpy=16, Sigmoid=16, Pooling=18,
                                  InnerProduct=1, Input=1, Softmax=1, total=309),
    "SE-ResNet-101.prototxt": dict(Convolution=170, BatchNorm=104, Scale=104, Axpy=33, InnerProduct=1, total=615),
    "SE-ResNet-152.prototxt": dict(Convolution=255, BatchNorm=155, Scale=155, Axpy=50, InnerProduct=1, total=921),
    "SE-ResNeXt-50.prototxt": dict(Convolution=85, BatchNorm=53, Scale=53, Axpy=16, InnerProduct=1, total=309),
    "SE-ResNeXt-101.prototxt": dict(Convolution=170, BatchNorm=104, Scale=104, Axpy=33, InnerProduct=1, total=615),
    "SENet-154.prototxt": dict(Convolution=257, BatchNorm=157, Scale=157, Axpy=50, Dropout=1, InnerProduct=1,
                               total=930),
    "SE-BN-Inception.prototxt": dict(Convolution=89, BatchNorm=69, Scale=79, Concat=10, Reshape=10, Axpy=0,
                                     InnerProduct=1, total=372),
}


def _rand(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def small_net(seed: int = 0) -> caffe_io.CaffeNet:
    """A small net with every parameter kind the release uses, plus awkward values and a 0-d blob."""
    rng = np.random.default_rng(seed)
    P = caffe_pb2.LayerParameter

    def layer(name, type_, bottoms, tops, blobs=(), **params):
        proto = P(name=name, type=type_, bottom=bottoms, top=tops, **params)
        return caffe_io.CaffeLayer(name, type_, list(bottoms), list(tops), list(blobs), proto)

    special = _rand(rng, 4, 3, 3, 3)
    special.flat[:5] = [np.nan, np.inf, -np.inf, -0.0, np.float32(1e-45)]
    layers = [
        layer("data", "Input", [], ["data"],
              input_param=caffe_pb2.InputParameter(shape=[caffe_pb2.BlobShape(dim=[1, 3, 8, 8])])),
        layer("conv1/3x3", "Convolution", ["data"], ["conv1"], [special, _rand(rng, 4)],
              convolution_param=caffe_pb2.ConvolutionParameter(num_output=4, kernel_size=[3], pad=[1], stride=[2],
                                                                group=1),
              param=[caffe_pb2.ParamSpec(lr_mult=1, decay_mult=1), caffe_pb2.ParamSpec(lr_mult=2, decay_mult=0)]),
        layer("conv1/3x3/bn", "BatchNorm", ["conv1"], ["conv1"], [_rand(rng, 4), _rand(rng, 4), np.array([999.5], np.float32)],
              batch_norm_param=caffe_pb2.BatchNormParameter(use_global_stats=True, eps=1e-4)),
        layer("conv1/3x3/bn/scale", "Scale", ["conv1"], ["conv1"], [_rand(rng, 4), _rand(rng, 4)],
              scale_param=caffe_pb2.ScaleParameter(bias_term=True)),
        layer("relu1", "ReLU", ["conv1"], ["conv1"], relu_param=caffe_pb2.ReLUParameter(engine=1)),
        layer("pool1", "Pooling", ["conv1"], ["pool1"],
              pooling_param=caffe_pb2.PoolingParameter(pool=1, global_pooling=True, engine=1, round_mode=1)),
        layer("fc", "InnerProduct", ["pool1"], ["fc"], [_rand(rng, 10, 4), _rand(rng, 10)],
              inner_product_param=caffe_pb2.InnerProductParameter(num_output=10)),
        layer("scalar", "Parameter", [], ["s"], [np.array(3.5, np.float32)]),
        layer("prob", "Softmax", ["fc"], ["prob"]),
    ]
    return caffe_io.CaffeNet(name="small", layers=layers, source=Path("<memory>"), input_shape=(1, 3, 8, 8))


def assert_blobs_identical(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert y.dtype == np.float32 and y.flags.c_contiguous and x.shape == y.shape
        assert np.array_equal(np.asarray(x, np.float32).view(np.uint32), y.view(np.uint32))  # bit-exact


def assert_nets_identical(a: caffe_io.CaffeNet, b: caffe_io.CaffeNet, protos: bool = True) -> None:
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    for x, y in zip(a.layers, b.layers):
        assert (x.type, x.bottoms, x.tops) == (y.type, y.bottoms, y.tops), x.name
        assert_blobs_identical(x.blobs, y.blobs)
        if protos:
            assert x.proto == y.proto, x.name


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(SenetZooError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- round trips ------------------------------------------------------------------------------------------------


def test_binary_v2_round_trip(tmp_path):
    net = small_net()
    path = tmp_path / "small.caffemodel"
    caffe_io.write_caffemodel(net, path)
    back = caffe_io.read_weights(path)
    assert back.name == "small" and back.source == path and back.input_shape == (1, 3, 8, 8)
    assert_nets_identical(net, back)
    assert back.layer("scalar").blobs[0].shape == ()
    assert back.layer("pool1").proto.pooling_param.round_mode == caffe_pb2.PoolingParameter.FLOOR
    assert back.layer("conv1/3x3/bn").proto.batch_norm_param.eps == pytest.approx(1e-4)
    assert [l.name for l in back.param_layers()] == ["conv1/3x3", "conv1/3x3/bn", "conv1/3x3/bn/scale", "fc", "scalar"]
    # protobuf itself agrees, and we wrote fields in C++ order (so Caffe's own files look alike)
    reference = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert len(reference.layer) == len(net.layers)
    assert reference.layer[1].blobs[0].shape.dim == [4, 3, 3, 3]
    assert path.read_bytes() == reference.SerializeToString()


def test_dataclass_fields_win_over_proto_when_writing(tmp_path):
    net = small_net()
    net.layers[4].name = "renamed"
    net.layers.append(caffe_io.CaffeLayer("extra", "InnerProduct", ["x"], ["y"], [np.ones((2, 3), np.float32)], None))
    path = tmp_path / "m.caffemodel"
    caffe_io.write_caffemodel(net, path)
    back = caffe_io.read_weights(path)
    assert back.layers[4].name == "renamed" and back.layers[4].proto.name == "renamed"
    assert back.layer("extra").type == "InnerProduct" and back.layer("extra").bottoms == ["x"]


def test_legacy_v1_round_trip(tmp_path):
    net = small_net()
    path = tmp_path / "v1.caffemodel"
    caffe_io.write_caffemodel(net, path, legacy_v1=True)
    raw = caffe_pb2.NetParameter.FromString(path.read_bytes())
    assert len(raw.layers) == len(net.layers) - 1 and not raw.layer  # the Input layer became input/input_dim
    assert list(raw.input) == ["data"] and list(raw.input_dim) == [1, 3, 8, 8]
    back = caffe_io.read_weights(path)
    assert back.input_shape == (1, 3, 8, 8)
    expected = net.layers[1:]
    assert [l.name for l in back.layers] == [l.name for l in expected]
    for want, got in zip(expected, back.layers):
        assert_blobs_identical(want.blobs, got.blobs)
        assert (got.bottoms, got.tops) == (want.bottoms, want.tops)
        if want.type in ("BatchNorm", "Scale", "Parameter"):  # no V1 enum value: written as NONE
            assert got.type == "" and got.proto is None
        else:
            assert got.type == want.type
            for name in ("convolution_param", "pooling_param", "inner_product_param", "relu_param"):
                assert getattr(got.proto, name) == getattr(want.proto, name)
    conv = back.layer("conv1/3x3").proto
    assert [(p.lr_mult, p.decay_mult) for p in conv.param] == [(1, 1), (2, 0)]


def test_hdf5_round_trip(tmp_path):
    net = small_net()
    path = tmp_path / "small.caffemodel.h5"
    caffe_io.write_caffemodel_h5(net, path)
    back = caffe_io.read_weights(path)
    expected = net.param_layers()
    assert [l.name for l in back.layers] == [l.name for l in expected]  # names with '/' nest groups; order kept
    for want, got in zip(expected, back.layers):
        assert_blobs_identical(want.blobs, got.blobs)
        assert got.type == "" and got.proto is None
    assert back.input_shape is None


def test_hdf5_as_caffe_writes_it(tmp_path):
    """Caffe's ToHDF5 makes a group for every layer (empty ones too), no creation order, 10+ blobs sort oddly."""
    import h5py

    path = tmp_path / "caffe.h5"
    blobs = [np.full((2,), i, np.float32) for i in range(11)]
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.create_group("relu")  # parameter-free layer
        for i, b in enumerate(blobs):
            data.create_dataset(f"many/{i}", data=b)
        data.create_dataset("conv/0", data=np.arange(6, dtype=np.float64).reshape(1, 1, 2, 3))
        f.create_group("diff")
    back = caffe_io.read_weights(path)
    assert [l.name for l in back.layers] == ["conv", "many"]
    assert back.layer("conv").blobs[0].dtype == np.float32 and back.layer("conv").blobs[0].shape == (1, 1, 2, 3)
    assert_blobs_identical(blobs, back.layer("many").blobs)


def test_prototxt_round_trip(tmp_path):
    net = small_net()
    path = tmp_path / "small.prototxt"
    caffe_io.write_prototxt(net, path)
    back = caffe_io.read_prototxt(path)
    assert all(not l.blobs for l in back.layers)
    assert back.input_shape == (1, 3, 8, 8)
    for want, got in zip(net.layers, back.layers):
        assert want.proto == got.proto


def test_layer_lookup():
    net = small_net()
    assert net.layer("fc").type == "InnerProduct"
    message = error_of(net.layer, "fc7")
    assert "<memory>" in message and "fc7" in message and "'fc'" in message


# --- the official prototxts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(OFFICIAL_COUNTS))
def test_official_prototxts_parse(filename, tmp_path):
    path = RELEASE / filename
    if not path.is_file():
        pytest.skip(f"the release's prototxts are not checked out at {RELEASE}")
    net = caffe_io.read_prototxt(path)
    counts = collections.Counter(layer.type for layer in net.layers)
    expected = dict(OFFICIAL_COUNTS[filename])
    assert len(net.layers) == expected.pop("total")
    assert {t: counts.get(t, 0) for t in expected} == expected
    assert net.input_shape == (1, 3, 224, 224)
    assert net.layers[0].type == "Input" and net.layers[0].tops == ["data"]
    pools = [l.proto.pooling_param for l in net.layers if l.type == "Pooling"]
    assert any(p.global_pooling and p.engine == caffe_pb2.PoolingParameter.CAFFE for p in pools)
    # written back and re-read: the same messages
    caffe_io.write_prototxt(net, tmp_path / filename)
    again = caffe_io.read_prototxt(tmp_path / filename)
    assert [l.proto for l in again.layers] == [l.proto for l in net.layers]


# --- an independent writer: protobuf's own SerializeToString -----------------------------------------------------


def _legacy_classes():
    """The same schema with non-packed float/double data, as old protobuf writers produced it."""
    fdp = descriptor_pb2.FileDescriptorProto()
    caffe_pb2.DESCRIPTOR.CopyToProto(fdp)
    for msg in fdp.message_type:
        for f in msg.field:
            if (msg.name, f.name) in {("BlobProto", "data"), ("BlobProto", "double_data"), ("BlobShape", "dim")}:
                f.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def independent_net(packed: bool):
    rng = np.random.default_rng(7)
    Net = caffe_pb2.NetParameter if packed else _legacy_classes()
    net = Net(name="indep")
    w4 = _rand(rng, 2, 3, 1, 1)
    conv = net.layer.add(name="conv", type="Convolution", bottom=["data"], top=["conv"])
    conv.convolution_param.num_output = 2
    conv.convolution_param.weight_filler.type = "msra"
    b = conv.blobs.add()
    b.shape.dim.extend(w4.shape)
    b.data.extend(w4.ravel().tolist())
    # legacy 4-D num/channels/height/width (pre-2015 caffemodels), which win over `shape`
    ip = _rand(rng, 5, 6)
    fc = net.layer.add(name="fc", type="InnerProduct", bottom=["conv"], top=["fc"])
    lb = fc.blobs.add(num=1, channels=1, height=5, width=6)
    lb.data.extend(ip.ravel().tolist())
    # double_data: accepted, converted to float32
    dd = rng.standard_normal(5)
    db = fc.blobs.add()
    db.shape.dim.append(5)
    db.double_data.extend(dd.tolist())
    expected = {"conv": [w4], "fc": [ip.reshape(1, 1, 5, 6), dd.astype(np.float32)]}
    return net.SerializeToString(), expected


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "non-packed"])
def test_reads_protobufs_own_serialization(tmp_path, packed):
    data, expected = independent_net(packed)
    if not packed:
        assert b"\x2d" in data and len(data) > 5 * 30  # one tag per float
    path = tmp_path / "indep.caffemodel"
    path.write_bytes(data)
    fast = caffe_io.read_weights(path)
    slow = caffe_io.net_from_proto(caffe_pb2.NetParameter.FromString(data), path)
    assert_nets_identical(slow, fast)
    for name, blobs in expected.items():
        assert_blobs_identical(blobs, fast.layer(name).blobs)
    assert fast.layer("conv").proto.convolution_param.weight_filler.type == "msra"


def test_reads_v1_written_by_protobuf(tmp_path):
    net = caffe_pb2.NetParameter(name="old", input=["data"], input_dim=[10, 3, 227, 227])
    layer = net.layers.add(name="conv1", type=caffe_pb2.V1LayerParameter.CONVOLUTION, bottom=["data"],
                           top=["conv1"], blobs_lr=[1, 2], weight_decay=[1, 0])
    layer.convolution_param.num_output = 96
    layer.convolution_param.kernel_size.append(11)
    blob = layer.blobs.add(num=96, channels=3, height=11, width=11)
    blob.data.extend(np.arange(96 * 3 * 11 * 11, dtype=np.float32).tolist())
    net.layers.add(name="relu1", type=caffe_pb2.V1LayerParameter.RELU, bottom=["conv1"], top=["conv1"])
    path = tmp_path / "old.caffemodel"
    path.write_bytes(net.SerializeToString())
    back = caffe_io.read_weights(path)
    assert back.input_shape == (10, 3, 227, 227)
    assert [(l.name, l.type) for l in back.layers] == [("conv1", "Convolution"), ("relu1", "ReLU")]
    conv = back.layer("conv1")
    assert conv.blobs[0].shape == (96, 3, 11, 11) and conv.blobs[0].ravel()[-1] == 96 * 3 * 11 * 11 - 1
    assert conv.proto.convolution_param.kernel_size == [11]
    assert [(p.lr_mult, p.decay_mult) for p in conv.proto.param] == [(1, 1), (2, 0)]


# --- bad inputs ---------------------------------------------------------------------------------------------------


def _top_level_boundaries(data: bytes) -> set[int]:
    return {0} | {end for *_, end in wire._fields(data, 0, len(data), len(data))}


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "non-packed"])
def test_truncated_caffemodel_is_always_detected(tmp_path, packed):
    data, _ = independent_net(packed)
    path = tmp_path / "cut.caffemodel"
    boundaries = _top_level_boundaries(data)
    for cut in range(1, len(data)):
        if cut in boundaries:  # a whole number of messages: no format can tell
            continue
        path.write_bytes(data[:cut])
        message = error_of(caffe_io.read_weights, path)
        assert str(path) in message and ("truncated" in message or "not a Caffe model" in message), (cut, message)


def test_caffemodel_cut_in_half(tmp_path):
    path = tmp_path / "half.caffemodel"
    caffe_io.write_caffemodel(small_net(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = error_of(caffe_io.read_weights, path)
    assert message.startswith(f"{path}: truncated") and "layer" in message


NOT_CAFFE = {
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01" + bytes(200),
    "torch-zip": b"PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl" + bytes(100),
    "pickle": pickle.dumps({"state_dict": [1.0, 2.0]}, protocol=2),
    "text": b'name: "SE-ResNet-50"\nlayer { name: "data" type: "Input" }\n',
    "random-1": np.random.default_rng(1).bytes(4096),
    "random-2": np.random.default_rng(2).bytes(4096),
    "random-3": np.random.default_rng(3).bytes(333),
    "zeros": bytes(64),
}


@pytest.mark.parametrize("kind", sorted(NOT_CAFFE))
def test_not_a_caffemodel(tmp_path, kind):
    path = tmp_path / f"{kind}.caffemodel"
    path.write_bytes(NOT_CAFFE[kind])
    message = error_of(caffe_io.read_weights, path)
    assert message.startswith(f"{path}: ") and "not a Caffe model" in message
    if kind in ("jpeg", "pickle", "text"):
        assert {"jpeg": "JPEG", "pickle": "pickle", "text": "text"}[kind] in message


def test_missing_empty_and_directory(tmp_path):
    for fn in (caffe_io.read_weights, caffe_io.read_prototxt):
        assert "no such file" in error_of(fn, tmp_path / "missing")
        assert "directory" in error_of(fn, tmp_path)
        (tmp_path / "empty").write_bytes(b"")
        message = error_of(fn, tmp_path / "empty")
        assert str(tmp_path / "empty") in message and "empty" in message


def test_blob_count_must_match_shape(tmp_path):
    net = caffe_pb2.NetParameter(name="bad")
    layer = net.layer.add(name="conv2", type="Convolution")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3, 3, 3])
    blob.data.extend([0.5] * 50)
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(net.SerializeToString())
    message = error_of(caffe_io.read_weights, path)
    assert str(path) in message and "conv2" in message and "2x3x3x3" in message and "50" in message


def test_bad_prototxts(tmp_path):
    path = tmp_path / "typo.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "c"\n  type: "Convolution"\n  convolution_param { num_outptu: 3 }\n}\n')
    message = error_of(caffe_io.read_prototxt, path)
    assert str(path) in message and "5:" in message and "num_outptu" in message
    caffemodel = tmp_path / "m.caffemodel"
    caffe_io.write_caffemodel(small_net(), caffemodel)
    assert "not a text prototxt" in error_of(caffe_io.read_prototxt, caffemodel)
    (tmp_path / "nolayers.prototxt").write_text('name: "x"\n')
    assert "no layers" in error_of(caffe_io.read_prototxt, tmp_path / "nolayers.prototxt")


def test_bad_hdf5(tmp_path):
    import h5py

    path = tmp_path / "nodata.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.zeros(3))
    assert "'data' group" in error_of(caffe_io.read_weights, path)
    good = tmp_path / "good.h5"
    caffe_io.write_caffemodel_h5(small_net(), good)
    cut = tmp_path / "cut.caffemodel"  # chosen by magic, not by extension
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    message = error_of(caffe_io.read_weights, cut)
    assert str(cut) in message and "HDF5" in message


def test_failed_writes_leave_nothing(tmp_path):
    net = small_net()
    net.layers[1].blobs[0] = np.array(["not", "floats"], dtype=object)
    for fn in (caffe_io.write_caffemodel, caffe_io.write_caffemodel_h5):
        out = tmp_path / "out" / "model.bin"
        message = error_of(fn, net, out)
        assert str(out) in message and "conv1/3x3" in message
        assert not out.parent.exists() or not any(out.parent.iterdir())
    dup = small_net()
    dup.layers[6].name = dup.layers[1].name
    out = tmp_path / "dup.h5"
    assert str(out) in error_of(caffe_io.write_caffemodel_h5, dup, out)
    assert not any(tmp_path.glob("*dup*"))
    # an existing output survives a failed rewrite
    good = tmp_path / "keep.caffemodel"
    caffe_io.write_caffemodel(small_net(), good)
    before = good.read_bytes()
    with pytest.raises(SenetZooError):
        caffe_io.write_caffemodel(net, good)
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["keep.caffemodel"]
