"""caffe_io.binary: the binary caffemodel reader, on caffemodels encoded here by hand, byte by byte, from the
protobuf wire format and caffe.proto's field numbers (NetParameter: name 1, layers 2, input 3, input_dim 4,
force_backward 5, state 6, debug_info 7, input_shape 8, layer 100; LayerParameter: name 1, type 2, bottom 3,
top 4, param 6, blobs 7; V1LayerParameter: bottom 2, top 3, name 4, type 5, blobs 6, blobs_lr 7; BlobProto:
num 1, channels 2, height 3, width 4, data 5, diff 6, shape 7, double_data 8, double_diff 9). The expected
values are the literals written into the file; protobuf's own parser is the reference for what a layer's
message holds."""
from __future__ import annotations

import mmap
import os
import struct

import numpy as np
import pytest

from senet_zoo.converters import caffe_pb2
from senet_zoo.converters.caffe_io import binary, read_weights
from senet_zoo.errors import SenetZooError


# -- hand encoding ------------------------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def vi(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def ld(number: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def packed_f(values) -> bytes:
    return ld(5, struct.pack(f"<{len(values)}f", *values))


def packed_d(values) -> bytes:
    return ld(8, struct.pack(f"<{len(values)}d", *values))


def recs_f(values) -> bytes:  # legacy non-packed data: one tag (0x2d) per float
    return b"".join(b"\x2d" + struct.pack("<f", v) for v in values)


def recs_d(values) -> bytes:  # non-packed double_data: one tag (0x41) per double
    return b"".join(b"\x41" + struct.pack("<d", v) for v in values)


def shape(*dims) -> bytes:
    return ld(7, b"".join(vi(1, d) for d in dims))


def v2_layer(name="conv", type_="Convolution", blobs=(), bottoms=("data",), tops=("conv",), extra=b"") -> bytes:
    body = ld(1, name) + ld(2, type_) + b"".join(ld(3, b) for b in bottoms) + b"".join(ld(4, t) for t in tops)
    return ld(100, body + extra + b"".join(ld(7, b) for b in blobs))


def v1_layer(name="conv", type_=4, blobs=(), bottoms=("data",), tops=("conv",), extra=b"") -> bytes:
    body = b"".join(ld(2, b) for b in bottoms) + b"".join(ld(3, t) for t in tops) + ld(4, name) + vi(5, type_)
    return ld(2, body + extra + b"".join(ld(6, b) for b in blobs))


def write(tmp_path, data: bytes, name="w.caffemodel"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def error(path) -> str:
    with pytest.raises(SenetZooError) as info:
        read_weights(path)
    return str(info.value)


def blob_of(tmp_path, blob: bytes) -> np.ndarray:
    net = read_weights(write(tmp_path, ld(1, "n") + v2_layer(blobs=[blob])))
    (array,) = net.layers[0].blobs
    assert array.dtype == np.float32 and array.flags.c_contiguous
    return array


def blob_error(tmp_path, blob: bytes, after: bytes = b"") -> str:
    return error(write(tmp_path, ld(1, "n") + v2_layer(blobs=[blob]) + after))


# -- whole nets ---------------------------------------------------------------------------------------------------
def test_a_v2_net(tmp_path):
    w = [[1.5, -2.0, 0.25], [3.0, 4.0, -0.5]]
    data = (ld(1, "tiny") + ld(3, "data") + vi(4, 1) + vi(4, 3) + vi(4, 5) + vi(4, 7)
            + v2_layer("conv1", "Convolution", [shape(2, 3) + packed_f(sum(w, [])), shape(2) + packed_f([9, 8])],
                       extra=ld(6, b"\x1d" + struct.pack("<f", 0.0)))  # a ParamSpec, not a blob
            + v2_layer("relu1", "ReLU", [], bottoms=["conv1"], tops=["conv1"]))
    path = write(tmp_path, data)
    net = read_weights(path)
    assert net.name == "tiny"
    assert net.source == path
    assert net.input_shape == (1, 3, 5, 7)
    assert net.proto == caffe_pb2.NetParameter(name="tiny", input=["data"], input_dim=[1, 3, 5, 7])
    conv, relu = net.layers
    assert (conv.name, conv.type, conv.bottoms, conv.tops) == ("conv1", "Convolution", ["data"], ["conv"])
    assert (relu.name, relu.type, relu.bottoms, relu.tops, relu.blobs) == ("relu1", "ReLU", ["conv1"], ["conv1"], [])
    np.testing.assert_array_equal(conv.blobs[0], np.array(w, np.float32))
    np.testing.assert_array_equal(conv.blobs[1], np.array([9, 8], np.float32))
    assert [b.shape for b in conv.blobs] == [(2, 3), (2,)]
    assert conv.legacy_shapes == (False, False)
    expected = caffe_pb2.LayerParameter(name="conv1", type="Convolution", bottom=["data"], top=["conv"])
    expected.param.add().lr_mult = 0.0
    assert conv.proto == expected  # the param field (6) went to protobuf, the blobs (7) did not
    assert relu.proto == caffe_pb2.LayerParameter(name="relu1", type="ReLU", bottom=["conv1"], top=["conv1"])


def test_a_v1_net(tmp_path):
    blob = vi(1, 2) + vi(2, 1) + vi(3, 1) + vi(4, 3) + recs_f([1, 2, 3, 4, 5, 6])
    data = (ld(1, "old") + v1_layer("ip", 14, [blob], extra=ld(7, struct.pack("<f", 2.0)))  # blobs_lr: 2
            + v1_layer("mystery", 0, [], bottoms=["ip"], tops=["out"]))
    net = read_weights(write(tmp_path, data))
    ip, mystery = net.layers
    assert (ip.name, ip.type, ip.bottoms, ip.tops) == ("ip", "InnerProduct", ["data"], ["conv"])
    np.testing.assert_array_equal(ip.blobs[0], np.arange(1, 7, dtype=np.float32).reshape(2, 1, 1, 3))
    assert ip.legacy_shapes == (True,)
    assert ip.proto.param[0].lr_mult == 2.0  # V1's blobs_lr (7) upgraded, not taken for blobs
    assert (mystery.name, mystery.type, mystery.proto, mystery.bottoms, mystery.tops) == (
        "mystery", "", None, ["ip"], ["out"])
    assert net.proto == caffe_pb2.NetParameter(name="old")


def test_input_shape_from_the_header(tmp_path):
    data = ld(1, "n") + ld(3, "data") + ld(8, vi(1, 1) + vi(1, 3) + vi(1, 224) + vi(1, 224)) + v2_layer()
    assert read_weights(write(tmp_path, data)).input_shape == (1, 3, 224, 224)
    data = ld(1, "n") + v2_layer()
    assert read_weights(write(tmp_path, data)).input_shape is None


@pytest.mark.parametrize("layers", [1, 2])
def test_a_foreign_field_after_the_layers_is_corruption(tmp_path, layers):
    head = ld(1, "n") + v2_layer("a") * layers
    path = write(tmp_path, head + vi(9, 1) + v2_layer("b"))
    assert error(path) == (f"{path}: corrupt caffemodel: unexpected field 9 (wire type 0) after layer "
                           f"{layers - 1}, at byte {len(head)}")


def test_other_files_are_named_by_their_first_bytes(tmp_path):
    png = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 64)  # an unexpected first field
    assert error(png) == f"{png}: not a Caffe model: a PNG image"
    gz = write(tmp_path, b"\x1f\x8b\x08\x00" + b"\x00" * 20, "g")  # field 3 with wire type 7: bad wire data
    assert error(gz) == f"{gz}: not a Caffe model: a gzip file"
    text = write(tmp_path, b"\n " + b"a" * 32, "t")  # a NetParameter with only a name, which is also text
    assert error(text) == (f"{text}: not a Caffe model: a text file (a .prototxt? give it as --prototxt, and the "
                           "binary .caffemodel as --caffemodel)")


def test_only_the_first_64_bytes_are_sniffed(tmp_path):
    # each file is text in its first 64 bytes and binary in its 65th
    unexpected = write(tmp_path, b"A" * 64 + b"\x01" + b"A" * 7, "u")  # 'A': field 8, wire type 1 (64-bit)
    assert error(unexpected).endswith("not a Caffe model: a text file (a .prototxt? give it as --prototxt, and "
                                      "the binary .caffemodel as --caffemodel)")
    bad_wire = write(tmp_path, b"n" * 64 + b"\x01", "b")  # 'n': field 13, wire type 6
    assert error(bad_wire).endswith("not a Caffe model: a text file (a .prototxt? give it as --prototxt, and "
                                    "the binary .caffemodel as --caffemodel)")
    no_layers = write(tmp_path, b"\n>" + b"x" * 62 + b"\x1a\x01x", "n")  # a name and an input, no layer
    assert error(no_layers).endswith("not a Caffe model: a text file (a .prototxt? give it as --prototxt, and "
                                     "the binary .caffemodel as --caffemodel)")


def test_bad_wire_data_before_any_layer(tmp_path):
    path = write(tmp_path, vi(5, 0) + b"\x0b\x01")  # field 1 with wire type 3 (a group)
    assert error(path) == f"{path}: not a Caffe model: field 1 has wire type 3 (groups or invalid) at byte 2"
    path = write(tmp_path, vi(5, 0) + b"\x0a\x05ab", "t")
    assert error(path) == (f"{path}: not a Caffe model (or truncated within its header): field 1 needs 7 bytes, "
                           "4 are left at byte 2")


def test_a_header_without_layers(tmp_path):
    path = write(tmp_path, ld(1, "net") + vi(5, 1))
    assert error(path) == f"{path}: not a Caffe model: no layers (neither V2 'layer' nor V1 'layers' fields)"


def test_v1_and_v2_layers_together(tmp_path):
    path = write(tmp_path, ld(1, "n") + v2_layer() + v1_layer())
    assert error(path) == f"{path}: has both V2 'layer' and V1 'layers' fields; Caffe refuses such a net"


def test_the_layer_count_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(binary, "MAX_LAYERS", 3)
    assert len(read_weights(write(tmp_path, ld(1, "n") + v2_layer() * 3)).layers) == 3
    path = write(tmp_path, ld(1, "n") + v2_layer() * 4, "four")
    assert error(path) == (f"{path}: corrupt caffemodel: more than 3 layer records (the release's largest net "
                           "has 930)")


def test_a_truncated_second_layer(tmp_path):
    first, second = ld(1, "n") + v2_layer("a"), v2_layer("b", blobs=[shape(2) + packed_f([1, 2])])
    path = write(tmp_path, first + second[:-3])
    assert error(path) == (f"{path}: truncated: the file ends inside layer 1 (field 100 needs {len(second)} "
                           f"bytes, {len(second) - 3} are left; file is {len(first) + len(second) - 3} bytes, "
                           f"at byte {len(first)})")


def test_bad_wire_data_after_a_layer(tmp_path):
    head = ld(1, "n") + v2_layer("a")
    path = write(tmp_path, head + b"\x0f" + v2_layer("b"))  # field 1, wire type 7
    assert error(path) == (f"{path}: corrupt caffemodel: layer 1: field 1 has wire type 7 (groups or invalid) "
                           f"(byte {len(head)})")


def test_a_header_that_does_not_parse(tmp_path):
    path = write(tmp_path, ld(6, b"\x08") + v2_layer())  # NetState whose varint is cut
    message = error(path)
    assert message.startswith(f"{path}: corrupt caffemodel: the net header does not parse (")
    assert message.endswith(")") and len(message) > len(f"{path}: corrupt caffemodel: the net header does "
                                                         "not parse ()")


def test_names_must_be_utf8(tmp_path):
    path = write(tmp_path, ld(1, b"\xff\xfe") + v2_layer())
    assert error(path) == f"{path}: the net header: field 'name' is not UTF-8 text (b'\\xff\\xfe')"
    path = write(tmp_path, ld(1, "n") + v2_layer("a") + v2_layer(b"\xc3("), "l")
    assert error(path) == f"{path}: layer 1: field 'name' is not UTF-8 text (b'\\xc3(')"


HEADER_FIELDS = [
    ld(1, "name"), ld(3, "data"), vi(4, 10), ld(4, varint(1) + varint(3)), vi(5, 1), ld(6, vi(1, 0) + vi(2, 2)),
    vi(7, 1), ld(8, vi(1, 4)),
]


@pytest.mark.parametrize("field", HEADER_FIELDS)
def test_every_header_field_caffe_writes_is_read(tmp_path, field):
    net = read_weights(write(tmp_path, field + v2_layer()))
    assert net.proto == caffe_pb2.NetParameter.FromString(field)
    assert net.proto.ByteSize() > 0


def test_header_fields_may_come_between_layers_and_after_them(tmp_path):
    data = v2_layer("a") + ld(1, "late") + v2_layer("b") + vi(5, 1)
    net = read_weights(write(tmp_path, data))
    assert [layer.name for layer in net.layers] == ["a", "b"]
    assert net.proto == caffe_pb2.NetParameter(name="late", force_backward=True)


@pytest.mark.parametrize("field, number, wt", [
    (vi(1, 5), 1, 0), (vi(2, 5), 2, 0), (vi(3, 5), 3, 0), (b"\x25" + b"\x00" * 4, 4, 5), (ld(5, "x"), 5, 2),
    (vi(6, 1), 6, 0), (ld(7, "x"), 7, 2), (vi(8, 1), 8, 0), (vi(9, 1), 9, 0), (ld(9, "x"), 9, 2),
    (vi(100, 1), 100, 0), (ld(101, "x"), 101, 2), (b"\x19" + b"\x00" * 8, 3, 1),
])
def test_a_field_no_net_header_has_is_not_a_caffe_model(tmp_path, field, number, wt):
    path = write(tmp_path, vi(5, 0) + field + v2_layer())
    assert error(path) == (f"{path}: not a Caffe model (unexpected field {number}, wire type {wt} at byte 2 of "
                           "a NetParameter)")


# -- one layer ----------------------------------------------------------------------------------------------------
def test_blobs_field_with_another_wire_type(tmp_path):
    body = ld(1, "conv") + vi(7, 3)
    path = write(tmp_path, ld(1, "n") + ld(100, body))
    assert error(path) == (f"{path}: corrupt caffemodel: layer 0: blobs field has wire type 0 "
                           f"(byte {len(ld(1, 'n')) + 3 + len(ld(1, 'conv'))})")


def test_the_blob_count_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(binary, "MAX_BLOBS_PER_LAYER", 2)
    blob = shape(1) + packed_f([1])
    assert len(read_weights(write(tmp_path, ld(1, "n") + v2_layer(blobs=[blob] * 2))).layers[0].blobs) == 2
    path = write(tmp_path, ld(1, "n") + v2_layer() + v2_layer(blobs=[blob] * 3), "three")
    assert error(path) == f"{path}: corrupt caffemodel: layer 1 has more than 2 blobs"


def test_a_v0_layer_is_refused(tmp_path):
    path = write(tmp_path, ld(1, "n") + v1_layer("a") + v1_layer("b", extra=ld(1, ld(1, "old"))))
    assert error(path) == (f"{path}: layer 1 is a V0 layer (V1 field 'layer'); nets that old are not supported: "
                           "upgrade it with Caffe's upgrade_net_proto_binary")


def test_a_layer_that_does_not_parse(tmp_path):
    path = write(tmp_path, ld(1, "n") + v2_layer(extra=ld(6, b"\x1d\x00")))  # ParamSpec's float cut
    message = error(path)
    assert message.startswith(f"{path}: corrupt caffemodel: layer 0 does not parse (") and message.endswith(")")
    path = write(tmp_path, ld(1, "n") + v1_layer(extra=ld(32, b"\x10")), "v1")
    assert error(path).startswith(f"{path}: corrupt caffemodel: layer 0 does not parse (")


def test_a_wire_error_inside_a_layer(tmp_path):
    head = ld(1, "n") + v2_layer("a")
    body = ld(1, "b") + b"\x1b"  # field 3 with wire type 3
    path = write(tmp_path, head + ld(100, body) + v2_layer("c"))
    assert error(path) == (f"{path}: corrupt caffemodel: layer 1: field 3 has wire type 3 (groups or invalid) "
                           f"(byte {len(head) + 3 + len(ld(1, 'b'))})")


# -- one blob -----------------------------------------------------------------------------------------------------
def test_packed_doubles_become_float32(tmp_path):
    array = blob_of(tmp_path, shape(3) + packed_d([0.1, -2.5, 1e20]))
    np.testing.assert_array_equal(array, np.array([0.1, -2.5, 1e20], np.float32))


def test_doubles_win_over_floats(tmp_path):
    # Caffe's Blob::FromProto reads double_data when there is any
    array = blob_of(tmp_path, shape(2) + packed_f([7, 7]) + packed_d([1.25, 2.5]))
    np.testing.assert_array_equal(array, [1.25, 2.5])
    array = blob_of(tmp_path, shape(2) + recs_f([7, 7]) + recs_d([3.5, 4.5]))
    np.testing.assert_array_equal(array, [3.5, 4.5])


def test_values_of_several_fields_are_concatenated_in_file_order(tmp_path):
    blob = shape(7) + packed_f([1, 2]) + recs_f([3]) + packed_f([4]) + recs_f([5, 6]) + packed_f([7])
    np.testing.assert_array_equal(blob_of(tmp_path, blob), np.arange(1, 8))
    blob = shape(5) + packed_d([1, 2]) + recs_d([3]) + packed_d([4, 5])
    np.testing.assert_array_equal(blob_of(tmp_path, blob), np.arange(1, 6))


def test_shape_fields_are_merged(tmp_path):
    # protobuf merges a repeated message field's occurrences: dim 2 then dim 3
    blob = ld(7, vi(1, 2)) + packed_f(range(6)) + ld(7, vi(1, 3))
    assert blob_of(tmp_path, blob).shape == (2, 3)


def test_a_blob_without_shape_is_a_scalar(tmp_path):
    np.testing.assert_array_equal(blob_of(tmp_path, packed_f([4.5])), np.float32(4.5))
    assert blob_of(tmp_path, packed_f([4.5])).shape == ()


def test_legacy_dims_win_over_shape(tmp_path):
    array = blob_of(tmp_path, shape(6) + vi(1, 1) + vi(2, 2) + vi(3, 3) + vi(4, 1) + packed_f(range(6)))
    assert array.shape == (1, 2, 3, 1)
    array = blob_of(tmp_path, vi(4, 4) + packed_f([]))  # width only: the other dims are 0
    assert array.shape == (0, 0, 0, 4)


@pytest.mark.parametrize("value", [(1 << 64) - 1, 1 << 63, (1 << 64) - 5])
def test_negative_legacy_dims(tmp_path, value):
    # int32 -1 is written as the 10-byte varint of 2**64 - 1
    message = blob_error(tmp_path, vi(1, value) + vi(2, 1) + packed_f([1]))
    assert message.endswith(f"layer 0 'conv' blob 0: negative dimension in blob shape "
                            f"{value - (1 << 64)}x1x0x0")


def test_a_large_legacy_dim_is_not_negative(tmp_path):
    message = blob_error(tmp_path, vi(1, (1 << 63) - 1) + packed_f([1]))
    assert "negative" not in message and "9223372036854775807" in message


@pytest.mark.parametrize("field, what", [(ld(5, b"\x00" * 6), "packed float data of 6 bytes"),
                                         (ld(8, b"\x00" * 12), "packed double data of 12 bytes")])
def test_packed_data_of_a_wrong_length(tmp_path, field, what):
    message = blob_error(tmp_path, shape(1) + field)
    # the packed field's tag: after the net's name (3 bytes), the layer's key and length (3), its name, type,
    # bottom and top (31), the blob's key and length (2) and the blob's shape (4)
    assert message.endswith(f"corrupt caffemodel: layer 0 'conv' blob 0: {what} (byte 43)")


@pytest.mark.parametrize("field, number, wt", [
    (ld(1, "x"), 1, 2), (ld(2, "x"), 2, 2), (b"\x1d\x00\x00\x00\x00", 3, 5), (ld(4, "x"), 4, 2),
    (vi(5, 1), 5, 0), (b"\x29" + b"\x00" * 8, 5, 1), (vi(7, 1), 7, 0), (vi(8, 1), 8, 0),
    (b"\x45\x00\x00\x00\x00", 8, 5),
])
def test_blob_fields_with_the_wrong_wire_type(tmp_path, field, number, wt):
    message = blob_error(tmp_path, shape(1) + packed_f([1]) + field)
    # the field's tag: byte 43 as in test_packed_data_of_a_wrong_length, after the packed data (key, length, 4)
    assert message.endswith(f"corrupt caffemodel: layer 0 'conv' blob 0: field {number} has wire type {wt} "
                            "(byte 49)")


def test_diffs_and_unknown_fields_are_skipped(tmp_path):
    blob = (shape(3) + ld(6, struct.pack("<3f", 9, 9, 9)) + recs_f([1]) + ld(9, struct.pack("<d", 9))
            + vi(10, 5) + recs_f([2]) + ld(11, "x") + b"\x35" + b"\x00" * 4 + recs_f([3]) + b"\x31" + b"\x00" * 8)
    np.testing.assert_array_equal(blob_of(tmp_path, blob), [1, 2, 3])


def test_empty_packed_fields_hold_no_values(tmp_path):
    blob = shape(4) + recs_f([1, 2]) + ld(5, b"") + recs_f([3]) + ld(8, b"") + recs_f([4]) + ld(5, b"")
    np.testing.assert_array_equal(blob_of(tmp_path, blob), [1, 2, 3, 4])
    np.testing.assert_array_equal(blob_of(tmp_path, shape(2) + ld(8, b"") + packed_f([5, 6])), [5, 6])


def test_a_shape_that_does_not_parse(tmp_path):
    message = blob_error(tmp_path, ld(7, b"\x08") + packed_f([1]))
    assert "corrupt caffemodel: layer 0 'conv' blob 0 shape does not parse (" in message


def test_blob_errors_name_the_layer_and_blob(tmp_path):
    data = ld(1, "n") + v2_layer("a") + v2_layer("b", blobs=[packed_f([1]), shape(2) + packed_f([1])])
    path = write(tmp_path, data)
    assert error(path) == f"{path}: layer 1 'b' blob 1: 1 values for blob shape 2 (2 values)"


# -- legacy non-packed records ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 63, 64, 256, 257, 769])
def test_runs_of_float_records(tmp_path, n):
    values = np.arange(n, dtype=np.float32) * 0.5 - 7
    np.testing.assert_array_equal(blob_of(tmp_path, shape(n) + recs_f(values)), values)
    # the same run followed by another field, then one more record
    blob = shape(n + 1) + recs_f(values) + vi(10, 1) + recs_f([99])
    np.testing.assert_array_equal(blob_of(tmp_path, blob), np.append(values, 99))


@pytest.mark.parametrize("n", [1, 2, 64, 600])
def test_runs_of_double_records(tmp_path, n):
    values = np.arange(n, dtype=np.float64) / 4 + 1
    np.testing.assert_array_equal(blob_of(tmp_path, shape(n) + recs_d(values)), values.astype(np.float32))
    blob = shape(n + 1) + recs_d(values) + ld(6, b"") + recs_d([99])
    np.testing.assert_array_equal(blob_of(tmp_path, blob), np.append(values, 99))


def test_a_run_followed_by_the_other_records(tmp_path):
    # 300 float records then doubles: the float run ends at the first double tag (0x41), whose bytes are data
    blob = shape(2) + recs_f(np.ones(300)) + recs_d([5.0, 6.0])
    np.testing.assert_array_equal(blob_of(tmp_path, blob), [5, 6])
    np.testing.assert_array_equal(blob_of(tmp_path, shape(300) + recs_f(np.arange(300)) + ld(9, b"")),
                                  np.arange(300))


@pytest.mark.parametrize("lengths", [[1, 1, 1], [2, 1, 3, 1], [63, 1, 62], [64, 1, 63, 2], [5] * 40])
def test_interleaved_short_runs(tmp_path, lengths):
    values, blob, at = [], b"", 0
    for i, n in enumerate(lengths):
        run = [at + k + 0.25 for k in range(n)]
        at += n
        values += run
        blob += recs_f(run) + (vi(10, i) if i % 2 else ld(6, struct.pack("<f", -1)))
    np.testing.assert_array_equal(blob_of(tmp_path, shape(at) + blob), np.array(values, np.float32))


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_short_runs_decoded_in_batches(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(binary, "_SHORT_RUNS_AT_ONCE", batch)
    lengths = [3, 1, 2, 5, 1, 1, 4]
    values, blob, at = [], b"", 0
    for n in lengths:
        run = list(range(at, at + n))
        at += n
        values += run
        blob += recs_f(run) + vi(10, 0)
    np.testing.assert_array_equal(blob_of(tmp_path, shape(at) + blob), values)
    dvalues, dblob, at = [], b"", 0
    for n in lengths:
        run = [v + 0.5 for v in range(at, at + n)]
        at += n
        dvalues += run
        dblob += recs_d(run) + recs_f([-1, -1])  # float records between the doubles: skipped
    np.testing.assert_array_equal(blob_of(tmp_path, shape(at) + dblob), dvalues)


def test_doubles_interleaved_with_float_runs_of_every_length(tmp_path):
    dvalues, blob = [], b""
    for i, n in enumerate([1, 2, 70, 3, 300, 1]):
        dvalues.append(i * 1.5)
        blob += recs_d([i * 1.5]) + recs_f(np.full(n, 9.0)) + vi(10, 1)
    blob += recs_d([100.0])
    np.testing.assert_array_equal(blob_of(tmp_path, shape(len(dvalues) + 1) + blob), dvalues + [100.0])


def test_long_and_short_runs_mixed(tmp_path):
    runs = [70, 1, 2, 100, 3, 64, 63]
    values, blob, at = [], b"", 0
    for n in runs:
        run = list(range(at, at + n))
        at += n
        values += run
        blob += recs_f(run) + ld(11, b"")
    np.testing.assert_array_equal(blob_of(tmp_path, shape(at) + blob), values)
    values, blob, at = [], b"", 0
    for n in runs:
        run = list(range(at, at + n))
        at += n
        values += run
        blob += recs_d(run) + packed_f([-1])
    np.testing.assert_array_equal(blob_of(tmp_path, shape(at) + blob), values)


@pytest.mark.parametrize("tail, stride", [(b"\x2d\x00\x00\x00", 5), (b"\x41\x00\x00\x00\x00\x00\x00\x00", 9)])
def test_a_record_cut_at_the_end_of_the_file(tmp_path, tail, stride):
    blob = shape(2) + (recs_f([1, 2]) if stride == 5 else recs_d([1, 2])) + tail
    head = ld(1, "n")
    layer = v2_layer(blobs=[blob])
    path = write(tmp_path, head + layer)
    size = len(head) + len(layer)
    at = size - len(tail)
    assert error(path) == (f"{path}: truncated: the file ends inside layer 0 'conv' blob 0 (value runs past the "
                           f"end of its blob; file is {size} bytes, at byte {at})")
    path = write(tmp_path, head + layer + v2_layer("next"), "more")
    assert error(path) == (f"{path}: corrupt caffemodel: layer 0 'conv' blob 0: value runs past the end of its "
                           f"blob (byte {at})")


def test_a_record_tag_alone(tmp_path):
    message = blob_error(tmp_path, shape(1) + recs_f([1]) + b"\x2d", after=v2_layer("x"))
    assert "corrupt caffemodel: layer 0 'conv' blob 0: value runs past the end of its blob" in message


# -- reading the packed data --------------------------------------------------------------------------------------
def test_short_reads_are_continued(tmp_path, monkeypatch):
    real = os.preadv
    calls = []

    def three_bytes_at_a_time(fd, buffers, offset):
        calls.append(offset)
        return real(fd, [buffers[0][:3]], offset)

    monkeypatch.setattr(os, "preadv", three_bytes_at_a_time)
    values = np.arange(7, dtype=np.float32) + 0.5  # 28 bytes: nine reads of 3, then one of 1
    np.testing.assert_array_equal(blob_of(tmp_path, shape(7) + packed_f(values)), values)
    assert len(calls) == 10 and calls[1] - calls[0] == 3


def test_a_file_that_shrinks_while_read(tmp_path, monkeypatch):
    real = os.preadv
    calls = []

    def then_nothing(fd, buffers, offset):
        calls.append(offset)
        return real(fd, [buffers[0][:4]], offset) if len(calls) == 1 else 0

    monkeypatch.setattr(os, "preadv", then_nothing)
    blob = shape(3) + packed_f([1, 2, 3])
    head = ld(1, "n") + v2_layer(blobs=[blob])
    path = write(tmp_path, head)
    first = len(head) - 12
    assert error(path) == f"{path}: the file shrank while being read (at byte {first + 4})"
    assert calls == [first, first + 4]


class _Map(mmap.mmap):
    advice: list = []

    def madvise(self, option, start, length):
        _Map.advice.append((option, start, length))
        return super().madvise(option, start, length)


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED"), reason="no madvise here")
def test_decoded_record_pages_are_given_back(tmp_path, monkeypatch):
    monkeypatch.setattr(binary.mmap, "mmap", _Map)
    _Map.advice = []
    page = mmap.PAGESIZE
    n = page  # a run of 4096 records spans five pages
    values = np.arange(n, dtype=np.float32)
    blob = shape(n) + recs_f(values)
    head = ld(1, "n")
    data = head + v2_layer(blobs=[blob])
    np.testing.assert_array_equal(read_weights(write(tmp_path, data)).layers[0].blobs[0], values)
    first = len(data) - 5 * n + 1  # the first value's byte
    assert _Map.advice == [(mmap.MADV_DONTNEED, 0, first + 5 * n - 1)]
    _Map.advice = []
    # every _DROP_EVERY bytes walked, the walked bytes go back too
    monkeypatch.setattr(binary, "_DROP_EVERY", 2 * page)
    blob = shape(3 * page) + b"".join(recs_f([v]) + vi(10, 0) for v in range(3 * page))
    data = head + v2_layer(blobs=[blob])
    expected = np.arange(3 * page, dtype=np.float32)
    np.testing.assert_array_equal(read_weights(write(tmp_path, data)).layers[0].blobs[0], expected)
    assert _Map.advice and all(option == mmap.MADV_DONTNEED and start % page == 0
                               for option, start, _ in _Map.advice)
    assert len(_Map.advice) > 3


@pytest.mark.skipif(not hasattr(mmap, "MADV_DONTNEED"), reason="no madvise here")
@pytest.mark.parametrize("pad", [0, 5000])
def test_short_run_batches_give_back_exactly_the_pages_walked(tmp_path, monkeypatch, pad):
    # three short runs between other fields, decoded two runs at a time: after the second run the pages up to
    # its end go back, after the last run the pages up to the stretch's end; a long name after the blob keeps
    # the file longer than any of those ranges
    monkeypatch.setattr(binary.mmap, "mmap", _Map)
    monkeypatch.setattr(binary, "_SHORT_RUNS_AT_ONCE", 2)
    _Map.advice = []
    head = ld(1, "n" * (pad + 1))
    runs = [recs_f([1, 2]) + vi(10, 0), recs_f([3]) + vi(10, 0), recs_f([4, 5, 6])]
    blob = shape(6) + b"".join(runs)
    layer = v2_layer(blobs=[blob])
    data = head + layer + v2_layer("after" * 400)
    np.testing.assert_array_equal(read_weights(write(tmp_path, data)).layers[0].blobs[0], [1, 2, 3, 4, 5, 6])
    blob_end = len(head) + len(layer)
    second_end = blob_end - len(runs[2]) - 2  # the second run's last byte + 1 (before its separator)
    page = pad // mmap.PAGESIZE * mmap.PAGESIZE  # the first run lies in this page
    assert _Map.advice == [(mmap.MADV_DONTNEED, page, second_end - page),
                           (mmap.MADV_DONTNEED, page, blob_end - page)]


def test_a_field_longer_than_its_layer_or_blob_is_corruption(tmp_path):
    head = ld(1, "n")
    body = ld(1, "a") + b"\x1a\x09abc"  # a bottom announcing 9 bytes where the layer has 4 left
    path = write(tmp_path, head + ld(100, body) + v2_layer("b"))
    assert error(path) == (f"{path}: corrupt caffemodel: layer 0: field 3 needs 11 bytes, 5 are left "
                           f"(byte {len(head) + 3 + len(ld(1, 'a'))})")
    message = blob_error(tmp_path, shape(1) + packed_f([1]) + b"\x52\x09abc", after=v2_layer("c"))
    assert "corrupt caffemodel: layer 0 'conv' blob 0: field 10 needs 11 bytes, 5 are left (byte " in message
