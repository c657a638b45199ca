"""The protobuf wire format, bounded: varints and the top-level fields of a message, read without trusting any
length in the file (:class:`_WireError` says where it went wrong), and the few encoders the writers need."""
from __future__ import annotations

from typing import Iterator

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _WireError(Exception):
    """Internal: bad wire data at ``pos``; ``truncated`` when it runs past the end of the file."""

    def __init__(self, message: str, pos: int, truncated: bool = False):
        super().__init__(message)
        self.pos = pos
        self.truncated = truncated


def _varint(buf, pos: int, end: int, file_end: int) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _WireError("varint runs past the end of its message", start, truncated=end >= file_end)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _WireError("varint longer than 10 bytes", start)


def _fields(buf, start: int, end: int, file_end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Top-level fields of the message in ``buf[start:end]``: (number, wire type, tag start, value start, end).
    For varints the value is returned in place of the value start."""
    pos = start
    while pos < end:
        tag_start = pos
        key, pos = _varint(buf, pos, end, file_end)
        number, wt = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0", tag_start)
        if wt == _VARINT:
            value, pos = _varint(buf, pos, end, file_end)
            yield number, wt, tag_start, value, pos
            continue
        if wt == _LEN:
            length, pos = _varint(buf, pos, end, file_end)
            value_start, pos = pos, pos + length
        elif wt == _I64:
            value_start, pos = pos, pos + 8
        elif wt == _I32:
            value_start, pos = pos, pos + 4
        else:
            raise _WireError(f"field {number} has wire type {wt} (groups or invalid)", tag_start)
        if pos > end:
            raise _WireError(f"field {number} needs {pos - tag_start} bytes, {end - tag_start} are left",
                             tag_start, truncated=end >= file_end)
        yield number, wt, tag_start, value_start, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wt: int) -> bytes:
    return _encode_varint(number << 3 | wt)


def _split_fields(data: bytes, below: int) -> tuple[bytes, bytes]:
    """Split a serialized message into its fields numbered below ``below`` and the rest (order kept), so a
    repeated field can be inserted where C++ protobuf (which writes in field-number order) would put it."""
    head, tail = bytearray(), bytearray()
    for number, _, tag_start, _, end in _fields(data, 0, len(data), len(data)):
        (head if number < below else tail).extend(data[tag_start:end])
    return bytes(head), bytes(tail)
