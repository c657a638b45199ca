"""Reading binary caffemodels (V2 ``layer`` and legacy V1 ``layers``) by walking the protobuf wire format ourselves.

SENet-154 is ~460 MB, 115 M floats; ``ParseFromString`` would turn every float into a Python object. The file is
memory-mapped only to read the small message headers; every packed blob is read with ``os.preadv`` straight into
its own float32 array, so the peak memory is about one copy of the weights. Everything in a layer except its blobs
is handed to protobuf, so ``CaffeLayer.proto`` is exactly what protobuf would have parsed. Blob data written the
legacy non-packed way (one tag per float) is decoded with numpy, never element by element.
"""
from __future__ import annotations

import mmap
import os
import pathlib
from array import array

import numpy as np
from google.protobuf import message as _pb_message

from ...errors import SenetZooError
from .. import caffe_pb2
from .schema import (
    MAX_BLOBS_PER_LAYER, MAX_LAYERS, CaffeLayer, CaffeNet, _check_text, _finish_blob, _input_shape, _upgrade_v1,
)
from .sniff import _sniff
from .wire import _I32, _I64, _LEN, _VARINT, _fields, _WireError

_NET_FIELDS = {1: (_LEN,), 2: (_LEN,), 3: (_LEN,), 4: (_VARINT, _LEN), 5: (_VARINT,), 6: (_LEN,), 7: (_VARINT,),
               8: (_LEN,), 100: (_LEN,)}
_LEGACY_DIMS = {1: "num", 2: "channels", 3: "height", 4: "width"}
_FLOAT_TAG, _DOUBLE_TAG = 5 << 3 | _I32, 8 << 3 | _I64  # non-packed data / double_data records (one byte each)


class _BinaryReader:
    def __init__(self, path: pathlib.Path, fd: int, mm: mmap.mmap, size: int):
        self.path, self.fd, self.mm, self.size = path, fd, mm, size

    # -- errors ------------------------------------------------------------------------------------------------
    def fail(self, err: _WireError, where: str) -> SenetZooError:
        if err.truncated:
            return SenetZooError(self.path, f"truncated: the file ends inside {where} ({err}; file is "
                                            f"{self.size} bytes, at byte {err.pos})")
        return SenetZooError(self.path, f"corrupt caffemodel: {where}: {err} (byte {err.pos})")

    # -- whole net ---------------------------------------------------------------------------------------------
    def read(self) -> CaffeNet:
        mm, size = self.mm, self.size
        header_parts: list[bytes] = []
        layer_spans: list[tuple[int, int, int]] = []  # (field number, start, end)
        try:
            for number, wt, tag_start, value, end in _fields(mm, 0, size, size):
                allowed = _NET_FIELDS.get(number)
                if allowed is None or wt not in allowed:
                    if layer_spans:
                        raise SenetZooError(self.path, f"corrupt caffemodel: unexpected field {number} (wire type "
                                                       f"{wt}) after layer {len(layer_spans) - 1}, at byte {tag_start}")
                    what = _sniff(bytes(mm[:64]))
                    raise SenetZooError(self.path, f"not a Caffe model: {what}" if what else
                                        f"not a Caffe model (unexpected field {number}, wire type {wt} at byte "
                                        f"{tag_start} of a NetParameter)")
                if number in (100, 2):
                    if len(layer_spans) == MAX_LAYERS:
                        raise SenetZooError(self.path, f"corrupt caffemodel: more than {MAX_LAYERS} layer records "
                                                       "(the release's largest net has 930)")
                    layer_spans.append((number, value, end))
                else:
                    header_parts.append(bytes(mm[tag_start:end]))
        except _WireError as err:
            if not layer_spans:  # real caffemodels have a few header bytes, then layers
                what = _sniff(bytes(mm[:64]))
                truncated = " (or truncated within its header)" if err.truncated else ""
                raise SenetZooError(self.path, f"not a Caffe model: {what}" if what else
                                    f"not a Caffe model{truncated}: {err} at byte {err.pos}") from None
            raise self.fail(err, f"layer {len(layer_spans)}") from None
        numbers = {n for n, _, _ in layer_spans}
        if not layer_spans:
            what = _sniff(bytes(mm[:64]))
            raise SenetZooError(self.path, f"not a Caffe model: {what}" if what else
                                "not a Caffe model: no layers (neither V2 'layer' nor V1 'layers' fields)")
        if len(numbers) > 1:
            raise SenetZooError(self.path, "has both V2 'layer' and V1 'layers' fields; Caffe refuses such a net")
        header = self.parse(caffe_pb2.NetParameter, b"".join(header_parts), "the net header")
        _check_text(header, "the net header", self.path)
        layers = [self.read_layer(i, number == 2, start, end) for i, (number, start, end) in enumerate(layer_spans)]
        return CaffeNet(name=header.name, layers=layers, source=self.path, input_shape=_input_shape(header, layers),
                        proto=header)

    def parse(self, cls, data: bytes, where: str):
        try:
            return cls.FromString(data)
        except _pb_message.DecodeError as err:
            raise SenetZooError(self.path, f"corrupt caffemodel: {where} does not parse ({err})") from None

    # -- one layer ---------------------------------------------------------------------------------------------
    def read_layer(self, index: int, v1: bool, start: int, end: int) -> CaffeLayer:
        mm, size = self.mm, self.size
        blob_field = 6 if v1 else 7
        rest: list[bytes] = []
        blob_spans: list[tuple[int, int]] = []
        try:
            for number, wt, tag_start, value, fend in _fields(mm, start, end, size):
                if number == blob_field:
                    if wt != _LEN:
                        raise _WireError(f"blobs field has wire type {wt}", tag_start)
                    if len(blob_spans) == MAX_BLOBS_PER_LAYER:
                        raise SenetZooError(self.path, f"corrupt caffemodel: layer {index} has more than "
                                                       f"{MAX_BLOBS_PER_LAYER} blobs")
                    blob_spans.append((value, fend))
                elif v1 and number == 1:
                    raise SenetZooError(self.path, f"layer {index} is a V0 layer (V1 field 'layer'); nets that old "
                                                   "are not supported: upgrade it with Caffe's upgrade_net_proto_binary")
                else:
                    rest.append(bytes(mm[tag_start:fend]))
        except _WireError as err:
            raise self.fail(err, f"layer {index}") from None
        msg = self.parse(caffe_pb2.V1LayerParameter if v1 else caffe_pb2.LayerParameter, b"".join(rest),
                         f"layer {index}")
        _check_text(msg, f"layer {index}", self.path)
        where = f"layer {index} '{msg.name}'"
        proto = _upgrade_v1(msg) if v1 else msg
        read = [self.read_blob(s, e, f"{where} blob {i}") for i, (s, e) in enumerate(blob_spans)]
        return CaffeLayer(name=msg.name, type=proto.type if proto is not None else "", bottoms=list(msg.bottom),
                          tops=list(msg.top), blobs=[b for b, _ in read], proto=proto,
                          legacy_shapes=tuple(legacy for _, legacy in read))

    # -- one blob ----------------------------------------------------------------------------------------------
    def read_blob(self, start: int, end: int, where: str) -> tuple[np.ndarray, bool]:
        """The blob as float32 in its shape, and whether that shape came from the legacy 4-D fields."""
        mm, size = self.mm, self.size
        floats, doubles = _Segments(), _Segments()
        shape_parts: list[bytes] = []
        legacy: dict[str, int] = {}
        try:
            pos = dropped = start
            while pos < end:
                if pos - dropped > _DROP_EVERY:  # a walk over interleaved records must not hold the file in RSS
                    self.drop_pages(dropped, pos - dropped)
                    dropped = pos
                tag_start = pos
                if mm[pos] in (_FLOAT_TAG, _DOUBLE_TAG):  # a run of non-packed values: one numpy pass
                    is_float = mm[pos] == _FLOAT_TAG
                    stride = 5 if is_float else 9
                    count = self.run_length(pos, end, stride, mm[pos])
                    if count == 0:
                        raise _WireError("value runs past the end of its blob", pos, truncated=end >= size)
                    kind = _Segments.RECORDS if count >= _SHORT_RUN else _Segments.SHORT
                    (floats if is_float else doubles).add(kind, pos + 1, count, pos + count * stride)
                    pos += count * stride
                    continue
                number, wt, tag_start, value, fend = next(_fields(mm, pos, end, size))
                pos = fend
                if wt == _LEN and fend == value and number in (5, 8):
                    continue  # an empty packed field holds no values: no segment between the runs around it
                if number == 5 and wt == _LEN:
                    if (fend - value) % 4:
                        raise _WireError(f"packed float data of {fend - value} bytes", tag_start)
                    floats.add(_Segments.PACKED, value, (fend - value) // 4, fend)
                elif number == 8 and wt == _LEN:
                    if (fend - value) % 8:
                        raise _WireError(f"packed double data of {fend - value} bytes", tag_start)
                    doubles.add(_Segments.PACKED, value, (fend - value) // 8, fend)
                elif number == 7 and wt == _LEN:
                    shape_parts.append(bytes(mm[value:fend]))
                elif number in _LEGACY_DIMS and wt == _VARINT:
                    legacy[_LEGACY_DIMS[number]] = value - (1 << 64) if value >= 1 << 63 else value
                elif number in (1, 2, 3, 4, 5, 7, 8):
                    raise _WireError(f"field {number} has wire type {wt}", tag_start)
                # diff / double_diff (6, 9) and unknown fields: skipped
        except _WireError as err:
            raise self.fail(err, where) from None
        if shape_parts:
            dims = self.parse(caffe_pb2.BlobShape, b"".join(shape_parts), f"{where} shape").dim
        else:
            dims = ()
        # Caffe's Blob::FromProto: double_data when there is any, else data
        if doubles:
            values = self.gather(doubles, np.dtype("<f8"), 9).astype(np.float32)
        else:
            values = self.gather(floats, np.dtype("<f4"), 5)
        return _finish_blob(values, legacy, dims, where, self.path), bool(legacy)

    def run_length(self, pos: int, end: int, stride: int, tag: int) -> int:
        """How many records of ``stride`` bytes starting with ``tag`` follow at ``pos``. Looked at in windows
        that double, so the work is proportional to the run found, not to the rest of the blob (scanning to the
        end each time made interleaved records quadratic)."""
        total = (end - pos) // stride
        if total <= 1 or self.mm[pos + stride] != tag:  # a run of one (interleaved records): no numpy call
            return min(total, 1)
        count, window = 0, 256
        while count < total:
            n = min(window, total - count)
            tags = np.frombuffer(self.mm, np.uint8, count=n * stride, offset=pos + count * stride)[::stride]
            bad = np.flatnonzero(tags != tag)
            found = int(bad[0]) if bad.size else n
            del tags, bad  # no buffer exports may outlive the mmap
            count += found
            if found < n:
                break
            window *= 2
        return count

    def gather(self, segments: "_Segments", dtype: np.dtype, stride: int) -> np.ndarray:
        out = np.empty(sum(segments.counts), dtype=dtype)
        at = 0
        for kind, offset, count, end in zip(segments.kinds, segments.offsets, segments.counts, segments.ends):
            if kind == _Segments.PACKED:
                self.pread_into(out[at:at + count], offset)
            elif kind == _Segments.RECORDS:
                rows = np.frombuffer(self.mm, np.uint8, count=count * stride, offset=offset - 1)
                out[at:at + count] = rows.reshape(count, stride)[:, 1:].copy().view(dtype).reshape(count)
                del rows
                self.drop_pages(offset, count * stride)
            else:
                self.decode_stretch(out[at:at + count], offset - 1, end, dtype, stride)
            at += count
        return out.astype(dtype.newbyteorder("="), copy=False)  # a no-op on little-endian machines

    def decode_stretch(self, out: np.ndarray, start: int, end: int, dtype: np.dtype, stride: int) -> None:
        """Short record runs (records interleaved with other fields) between ``start`` and ``end``, walked a
        second time and decoded a bounded batch of runs at a time. Keeping every run's place from the first
        walk would cost 17 bytes a run, where a hostile file spends as little as 7 bytes on one; one numpy
        pass per run would cost ~10 us a value."""
        mm = self.mm
        tag = mm[start]
        offsets, counts = array("q"), array("q")
        at, pos = 0, start
        while pos < end:
            if mm[pos] == tag:
                count = self.run_length(pos, end, stride, tag)
                offsets.append(pos + 1)
                counts.append(count)
                pos += count * stride
                if len(offsets) == _SHORT_RUNS_AT_ONCE:
                    at += self.gather_short(out, at, offsets, counts, dtype, stride)
                    offsets, counts = array("q"), array("q")
                    self.drop_pages(start, pos - start)
                    start = pos
            elif mm[pos] in (_FLOAT_TAG, _DOUBLE_TAG):  # the other type's records: the other list holds them
                other = 14 - stride  # 5 <-> 9
                pos += self.run_length(pos, end, other, mm[pos]) * other
            else:
                pos = next(_fields(mm, pos, end, self.size))[4]  # checked by the first walk
        if offsets:
            at += self.gather_short(out, at, offsets, counts, dtype, stride)
        assert at == len(out), (at, len(out))  # the first walk counted these same runs
        self.drop_pages(start, end - start)

    def gather_short(self, out: np.ndarray, at: int, offsets, counts, dtype: np.dtype, stride: int) -> int:
        offsets, counts = np.frombuffer(offsets, np.int64), np.frombuffer(counts, np.int64)
        n = int(counts.sum())
        within = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        first = np.repeat(offsets, counts) + stride * within  # each value's first byte
        data = np.frombuffer(self.mm, np.uint8)
        out[at:at + n] = data[first[:, None] + np.arange(dtype.itemsize)].view(dtype).reshape(n)
        del data
        return n

    def pread_into(self, array: np.ndarray, offset: int) -> None:
        view = memoryview(array).cast("B")
        done = 0
        while done < len(view):
            n = os.preadv(self.fd, [view[done:]], offset + done)
            if n <= 0:
                raise SenetZooError(self.path, f"the file shrank while being read (at byte {offset + done})")
            done += n

    def drop_pages(self, offset: int, length: int) -> None:
        """Return the mapped pages just decoded to the kernel, so a legacy file does not count twice in RSS."""
        if hasattr(self.mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            start = offset - offset % mmap.PAGESIZE
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, start, min(offset + length, self.size) - start)
            except (OSError, ValueError):  # pragma: no cover - advice only
                pass


_SHORT_RUN = 64  # record runs shorter than this are decoded in batches, on a second walk over their bytes
_SHORT_RUNS_AT_ONCE = 1 << 14  # at most ~1 M values (~60 MB of index arrays) per numpy pass
_DROP_EVERY = 16 << 20  # bytes walked between returning mapped pages to the kernel


class _Segments:
    """Where a blob's values lie, in file order: packed runs, long runs of non-packed records (byte offset of
    the first value, count), and stretches of short record runs (count, and the bytes to walk again). A
    stretch stands for any number of short runs, so this costs 25 bytes per packed or long run (>= 320 bytes
    of file), whatever the file."""

    PACKED, RECORDS, SHORT = 0, 1, 2

    def __init__(self):
        self.kinds, self.offsets, self.counts, self.ends = array("b"), array("q"), array("q"), array("q")

    def add(self, kind: int, offset: int, count: int, end: int) -> None:
        if kind == self.SHORT and self.kinds and self.kinds[-1] == self.SHORT:
            self.counts[-1] += count
            self.ends[-1] = end
            return
        self.kinds.append(kind)
        self.offsets.append(offset)
        self.counts.append(count)
        self.ends.append(end)

    def __bool__(self) -> bool:
        return len(self.kinds) > 0


def _read_binary(path: pathlib.Path, fd: int, size: int) -> CaffeNet:
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        return _BinaryReader(path, fd, mm, size).read()
    finally:
        try:
            mm.close()
        except BufferError:  # pragma: no cover - a numpy view kept alive by a traceback; freed with it
            pass
