"""caffe_io.wire: the bounded protobuf wire format, against bytes written by hand from the protobuf encoding
rules (https://protobuf.dev/programming-guides/encoding/) and against protobuf's own serialization."""
from __future__ import annotations

import pytest

from senet_zoo.converters import caffe_pb2
from senet_zoo.converters.caffe_io.wire import _encode_varint, _fields, _key, _split_fields, _varint, _WireError


def wire_error(fn, *args) -> _WireError:
    with pytest.raises(_WireError) as info:
        list(fn(*args)) if fn is _fields else fn(*args)
    return info.value


@pytest.mark.parametrize("data, value", [
    (b"\x00", 0), (b"\x01", 1), (b"\x7f", 127), (b"\x80\x01", 128), (b"\x96\x01", 150), (b"\xac\x02", 300),
    (b"\xff\xff\x03", 65535), (b"\x80" * 9 + b"\x01", 1 << 63), (b"\xff" * 9 + b"\x01", (1 << 64) - 1),
])
def test_varint_decodes_the_documented_examples(data, value):
    # behind the varint: a byte that must never be read
    assert _varint(b"\x05\x05" + data + b"\xff", 2, len(data) + 3, len(data) + 3) == (value, len(data) + 2)


def test_varint_of_ten_bytes_is_the_longest():
    assert _varint(b"\x80" * 9 + b"\x00", 0, 10, 10) == (0, 10)
    err = wire_error(_varint, b"\x07" + b"\x80" * 10 + b"\x00", 1, 12, 12)
    assert (str(err), err.pos, err.truncated) == ("varint longer than 10 bytes", 1, False)


def test_varint_past_its_message_or_its_file():
    err = wire_error(_varint, b"\x01\x80\x80", 1, 3, 3)  # the file ends inside it
    assert (str(err), err.pos, err.truncated) == ("varint runs past the end of its message", 1, True)
    err = wire_error(_varint, b"\x01\x80\x80\x01", 1, 3, 4)  # its message ends inside it, the file goes on
    assert (str(err), err.pos, err.truncated) == ("varint runs past the end of its message", 1, False)
    err = wire_error(_varint, b"\x01\x80", 1, 2, 1)  # a head read of a file known to be longer (probe_weights)
    assert err.truncated is True


def test_wire_error_keeps_position_and_truncation():
    err = _WireError("boom", 17)
    assert (str(err), err.pos, err.truncated) == ("boom", 17, False)
    err = _WireError("boom", 3, True)
    assert (err.pos, err.truncated) == (3, True)


def test_fields_of_a_hand_encoded_message():
    data = (b"\xaa"  # a byte before the message, not part of it
            + b"\x08\x96\x01"  # field 1, varint 150
            + b"\x12\x03abc"  # field 2, length-delimited "abc"
            + b"\x19" + bytes(range(8))  # field 3, 64-bit
            + b"\x25" + b"\x01\x02\x03\x04"  # field 4, 32-bit
            + b"\xa2\x06\x00"  # field 100, empty length-delimited
            + b"\xbb")  # a byte after it
    fields = list(_fields(data, 1, len(data) - 1, len(data)))
    assert fields == [(1, 0, 1, 150, 4), (2, 2, 4, 6, 9), (3, 1, 9, 10, 18), (4, 5, 18, 19, 23),
                      (100, 2, 23, 26, 26)]


def test_fields_agree_with_protobufs_serialization():
    blob = caffe_pb2.BlobProto(num=2, channels=3, data=[1.0, 2.0])
    blob.shape.dim.extend([2, 3])
    data = blob.SerializeToString()
    numbers = [(n, wt) for n, wt, *_ in _fields(data, 0, len(data), len(data))]
    assert numbers == [(1, 0), (2, 0), (5, 2), (7, 2)]  # C++/upb write in field-number order


def test_field_number_zero():
    err = wire_error(_fields, b"\x08\x01\x00\x01", 0, 4, 4)
    assert (str(err), err.pos, err.truncated) == ("field number 0", 2, False)


@pytest.mark.parametrize("wt", [3, 4, 6, 7])
def test_groups_and_invalid_wire_types(wt):
    data = b"\x08\x01" + bytes([5 << 3 | wt]) + b"\x00" * 8
    err = wire_error(_fields, data, 0, len(data), len(data))
    assert (str(err), err.pos) == (f"field 5 has wire type {wt} (groups or invalid)", 2)


@pytest.mark.parametrize("body, needs", [
    (b"\x12\x05abc", 7),  # length-delimited: 5 announced, 3 there
    (b"\x19" + b"\x00" * 7, 9),  # 64-bit, one byte short
    (b"\x15" + b"\x00" * 3, 5),  # 32-bit, one byte short
])
def test_a_field_longer_than_what_is_left(body, needs):
    number = body[0] >> 3
    data = b"\x08\x01" + body
    err = wire_error(_fields, data, 0, len(data), len(data))
    assert (str(err), err.pos, err.truncated) == (
        f"field {number} needs {needs} bytes, {len(body)} are left", 2, True)
    # the same field inside a message that ends before the file does: corrupt, not truncated
    longer = data + b"\x08\x01" * 8
    err = wire_error(_fields, longer, 0, len(data), len(longer))
    assert (str(err), err.pos, err.truncated) == (
        f"field {number} needs {needs} bytes, {len(body)} are left", 2, False)


def test_a_field_that_ends_exactly_at_the_end_fits():
    data = b"\x12\x03abc\x19" + b"\x00" * 8 + b"\x15" + b"\x00" * 4
    assert [f[4] for f in _fields(data, 0, len(data), len(data))] == [5, 14, 19]


def test_truncation_of_the_key_and_of_the_length():
    err = wire_error(_fields, b"\x08\x01\x80", 0, 3, 3)  # the key's varint is cut
    assert (str(err), err.pos, err.truncated) == ("varint runs past the end of its message", 2, True)
    err = wire_error(_fields, b"\x08\x01\x12\x80", 0, 4, 4)  # the length's varint is cut
    assert (str(err), err.pos, err.truncated) == ("varint runs past the end of its message", 3, True)
    err = wire_error(_fields, b"\x08", 0, 1, 1)  # the value's varint is missing
    assert (str(err), err.pos, err.truncated) == ("varint runs past the end of its message", 1, True)


def test_no_fields_in_an_empty_range():
    assert list(_fields(b"\x08\x01", 2, 2, 2)) == []
    assert list(_fields(b"\x08\x01", 1, 1, 2)) == []


@pytest.mark.parametrize("value, data", [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (150, b"\x96\x01"), (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"), ((1 << 64) - 1, b"\xff" * 9 + b"\x01"),
])
def test_encode_varint(value, data):
    assert _encode_varint(value) == data


def test_keys():
    assert _key(1, 0) == b"\x08"
    assert _key(1, 2) == b"\x0a"
    assert _key(5, 5) == b"\x2d"
    assert _key(8, 1) == b"\x41"
    assert _key(100, 2) == b"\xa2\x06"  # NetParameter.layer


def test_split_fields_keeps_order_within_each_part():
    data = b"\x08\x01" + b"\x2a\x01x" + b"\x10\x02" + b"\x4a\x02yz" + b"\x18\x03" + b"\x28\x05"
    head, tail = _split_fields(data, 5)
    assert head == b"\x08\x01\x10\x02\x18\x03"
    assert tail == b"\x2a\x01x\x4a\x02yz\x28\x05"
    assert _split_fields(data, 1) == (b"", data)
    assert _split_fields(data, 10) == (data, b"")
    assert _split_fields(b"", 3) == (b"", b"")


def test_split_fields_refuses_bad_wire_data():
    with pytest.raises(_WireError):
        _split_fields(b"\x12\x05ab", 2)
