"""Reading and writing Caffe files without Caffe: text prototxt, binary caffemodel (V2 ``layer`` and legacy
V1 ``layers``) and HDF5 ``.caffemodel.h5``, all as one :class:`CaffeNet`.

Binary caffemodels are read by walking the protobuf wire format ourselves (SENet-154 is ~460 MB, 115 M floats;
``ParseFromString`` would turn every float into a Python object). The file is memory-mapped only to read the
small message headers; every packed blob is read with ``os.preadv`` straight into its own float32 array, so the
peak memory is about one copy of the weights. Everything in a layer except its blobs is handed to protobuf,
so ``CaffeLayer.proto`` is exactly what protobuf would have parsed. Blob data written the legacy non-packed way
(one tag per float) is decoded with numpy, never element by element.

Every bad input raises :class:`SenetZooError` naming the file; nothing is ever unpickled; writes are atomic.
"""
from __future__ import annotations

import math
import mmap
import os
import pathlib
import stat
from array import array
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from google.protobuf import message as _pb_message
from google.protobuf import text_format

from ...errors import SenetZooError
from ...files import atomic_path
from .. import caffe_pb2

__all__ = [
    "CaffeLayer", "CaffeNet", "read_prototxt", "read_weights", "write_caffemodel", "write_caffemodel_h5",
    "write_prototxt", "net_to_proto", "net_from_proto", "probe_weights",
]

PathLike = str | os.PathLike

# Refused before anything is allocated for them. The release's largest net (SENet-154) has 930 layers and no
# layer of Caffe has more than a handful of blobs, so these only stop files built to exhaust the reader
# (each layer record costs ~30 us of Python: 100,000 empty ones, 300 KB, took 3 s).
MAX_LAYERS = 10_000
MAX_BLOBS_PER_LAYER = 64
MAX_HDF5_DEPTH = 64


# ---------------------------------------------------------------------------------------------------------------
# The net


@dataclass
class CaffeLayer:
    name: str
    type: str  # V2 type string ("Convolution", ...); "" where the file does not say (HDF5, V1 type NONE)
    bottoms: list[str]
    tops: list[str]
    blobs: list[np.ndarray]  # float32, C-contiguous, Caffe's blob shape
    proto: "caffe_pb2.LayerParameter | None" = None  # the layer's message without blobs (None: HDF5 weights)
    # Per blob: its shape came from the deprecated num/channels/height/width fields. Caffe's Blob::ShapeEquals
    # compares those from the end of the target shape (a bias stored as 1x1x1xN is N), anything else exactly.
    legacy_shapes: tuple[bool, ...] = ()

    def legacy_shape(self, index: int) -> bool:
        return index < len(self.legacy_shapes) and self.legacy_shapes[index]


@dataclass
class CaffeNet:
    name: str
    layers: list[CaffeLayer]
    source: pathlib.Path
    input_shape: tuple[int, ...] | None = None
    # Net-level fields other than the layers (input, input_shape, input_dim, state, ...), kept so that writing
    # the net back loses nothing. None for HDF5 weights and nets built in memory.
    proto: "caffe_pb2.NetParameter | None" = field(default=None, repr=False, compare=False)

    def layer(self, name: str) -> CaffeLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        import difflib

        close = difflib.get_close_matches(name, [l.name for l in self.layers], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SenetZooError(self.source, f"has no layer named '{name}' ({len(self.layers)} layers){hint}")

    def param_layers(self) -> list[CaffeLayer]:
        return [layer for layer in self.layers if layer.blobs]


# ---------------------------------------------------------------------------------------------------------------
# V1 <-> V2 layer messages (Caffe's UpgradeV1LayerParameter / UpgradeV1LayerType)

_V1 = caffe_pb2.V1LayerParameter
_V1_TYPE_TO_V2 = {
    _V1.ABSVAL: "AbsVal", _V1.ACCURACY: "Accuracy", _V1.ARGMAX: "ArgMax", _V1.BNLL: "BNLL", _V1.CONCAT: "Concat",
    _V1.CONTRASTIVE_LOSS: "ContrastiveLoss", _V1.CONVOLUTION: "Convolution", _V1.DECONVOLUTION: "Deconvolution",
    _V1.DATA: "Data", _V1.DROPOUT: "Dropout", _V1.DUMMY_DATA: "DummyData", _V1.EUCLIDEAN_LOSS: "EuclideanLoss",
    _V1.ELTWISE: "Eltwise", _V1.EXP: "Exp", _V1.FLATTEN: "Flatten", _V1.HDF5_DATA: "HDF5Data",
    _V1.HDF5_OUTPUT: "HDF5Output", _V1.HINGE_LOSS: "HingeLoss", _V1.IM2COL: "Im2col", _V1.IMAGE_DATA: "ImageData",
    _V1.INFOGAIN_LOSS: "InfogainLoss", _V1.INNER_PRODUCT: "InnerProduct", _V1.LRN: "LRN",
    _V1.MEMORY_DATA: "MemoryData", _V1.MULTINOMIAL_LOGISTIC_LOSS: "MultinomialLogisticLoss", _V1.MVN: "MVN",
    _V1.POOLING: "Pooling", _V1.POWER: "Power", _V1.RELU: "ReLU", _V1.SIGMOID: "Sigmoid",
    _V1.SIGMOID_CROSS_ENTROPY_LOSS: "SigmoidCrossEntropyLoss", _V1.SILENCE: "Silence", _V1.SOFTMAX: "Softmax",
    _V1.SOFTMAX_LOSS: "SoftmaxWithLoss", _V1.SPLIT: "Split", _V1.SLICE: "Slice", _V1.TANH: "TanH",
    _V1.WINDOW_DATA: "WindowData", _V1.THRESHOLD: "Threshold",
}
_V2_TYPE_TO_V1 = {v: k for k, v in _V1_TYPE_TO_V2.items()}
_V1_PARAM_FIELDS = [f.name for f in _V1.DESCRIPTOR.fields if f.name.endswith("_param")]


def _upgrade_v1(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter | None:
    """A V1 layer as the V2 LayerParameter Caffe would upgrade it to; None for type NONE (the file does not say
    what the layer is: our legacy writer uses it for types V1 cannot name)."""
    if v1.type == _V1.NONE:
        return None
    layer = caffe_pb2.LayerParameter(name=v1.name, type=_V1_TYPE_TO_V2[v1.type])
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.loss_weight.extend(v1.loss_weight)
    for i in range(max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr), len(v1.weight_decay))):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    for name in _V1_PARAM_FIELDS:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


def _downgrade_v2(layer: caffe_pb2.LayerParameter) -> caffe_pb2.V1LayerParameter:
    """A V2 layer as a V1 message; types V1 has no enum value for become NONE with their parameters dropped."""
    v1 = caffe_pb2.V1LayerParameter(name=layer.name, type=_V2_TYPE_TO_V1.get(layer.type, _V1.NONE))
    v1.bottom.extend(layer.bottom)
    v1.top.extend(layer.top)
    v1.include.extend(layer.include)
    v1.exclude.extend(layer.exclude)
    v1.loss_weight.extend(layer.loss_weight)
    if v1.type != _V1.NONE:
        specs = list(layer.param)
        if any(s.HasField("name") for s in specs):
            v1.param.extend(s.name for s in specs)
        if any(s.HasField("share_mode") for s in specs):
            v1.blob_share_mode.extend(s.share_mode for s in specs)
        if any(s.HasField("lr_mult") for s in specs):
            v1.blobs_lr.extend(s.lr_mult for s in specs)
        if any(s.HasField("decay_mult") for s in specs):
            v1.weight_decay.extend(s.decay_mult for s in specs)
        for name in _V1_PARAM_FIELDS:
            if layer.HasField(name):
                getattr(v1, name).CopyFrom(getattr(layer, name))
    return v1


# ---------------------------------------------------------------------------------------------------------------
# Conversions between messages and CaffeLayer / CaffeNet


def _as_array(value, dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``, keeping 0-d shapes (np.ascontiguousarray makes them 1-d)."""
    array = np.asarray(value, dtype=dtype)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _shape_str(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"


def _finish_blob(values: np.ndarray, legacy: dict[str, int] | None, dims, where: str, source) -> np.ndarray:
    """Caffe's Blob::FromProto: legacy num/channels/height/width (any present) win over ``shape``."""
    if legacy:
        shape = tuple(int(legacy.get(k, 0)) for k in ("num", "channels", "height", "width"))
    else:
        shape = tuple(int(d) for d in dims)
    if any(d < 0 for d in shape):
        raise SenetZooError(source, f"{where}: negative dimension in blob shape {_shape_str(shape)}")
    count = math.prod(shape)
    if values.size != count:
        raise SenetZooError(source, f"{where}: {values.size} values for blob shape {_shape_str(shape)} "
                                    f"({count} values)")
    return values.reshape(shape)


def _blob_from_message(blob: caffe_pb2.BlobProto, where: str, source) -> np.ndarray:
    """Slow path (prototxt and in-memory messages): a BlobProto as a float32 array."""
    if len(blob.double_data):
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        values = np.array(blob.data, dtype=np.float32)
    legacy = {k: getattr(blob, k) for k in ("num", "channels", "height", "width") if blob.HasField(k)}
    return _finish_blob(values, legacy, blob.shape.dim, where, source)


def _is_repeated(descriptor) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf >= 5 (``label`` is gone in 7)
        return bool(descriptor.is_repeated)
    return descriptor.label == descriptor.LABEL_REPEATED


def _check_text(msg, where: str, source) -> None:
    """Refuse string fields that are not UTF-8: protobuf hands them over as bytes, which no name can match."""
    for descriptor, value in msg.ListFields():
        values = value if _is_repeated(descriptor) else [value]
        if descriptor.type == descriptor.TYPE_MESSAGE:
            for sub in values:
                _check_text(sub, where, source)
        elif descriptor.type == descriptor.TYPE_STRING:
            for text in values:
                if not isinstance(text, str):
                    raise SenetZooError(source, f"{where}: field '{descriptor.name}' is not UTF-8 text "
                                                f"({bytes(text[:32])!r})")


def _layer_from_message(msg, index: int, source) -> CaffeLayer:
    """A V2 or V1 layer message (blobs included) as a CaffeLayer."""
    raw_blobs = list(msg.blobs)
    _check_text(msg, f"layer {index}", source)
    if isinstance(msg, caffe_pb2.V1LayerParameter):
        v2 = _upgrade_v1(msg)
        name, bottoms, tops = msg.name, list(msg.bottom), list(msg.top)
    else:
        v2 = caffe_pb2.LayerParameter()
        v2.CopyFrom(msg)
        v2.ClearField("blobs")
        name, bottoms, tops = msg.name, list(msg.bottom), list(msg.top)
    blobs = [_blob_from_message(b, f"layer {index} '{name}' blob {i}", source) for i, b in enumerate(raw_blobs)]
    legacy = tuple(any(b.HasField(k) for k in ("num", "channels", "height", "width")) for b in raw_blobs)
    return CaffeLayer(name=name, type=v2.type if v2 is not None else "", bottoms=bottoms, tops=tops, blobs=blobs,
                      proto=v2, legacy_shapes=legacy)


def _input_shape(header: caffe_pb2.NetParameter, layers: list[CaffeLayer]) -> tuple[int, ...] | None:
    for layer in layers:
        if layer.type == "Input" and layer.proto is not None and len(layer.proto.input_param.shape):
            return tuple(int(d) for d in layer.proto.input_param.shape[0].dim)
    if len(header.input_shape):
        return tuple(int(d) for d in header.input_shape[0].dim)
    if len(header.input_dim) >= 4:
        return tuple(int(d) for d in header.input_dim[:4])
    return None


def net_from_proto(proto: caffe_pb2.NetParameter, source: PathLike = "<memory>") -> CaffeNet:
    """A NetParameter (V2 ``layer`` or V1 ``layers``, blobs optional) as a CaffeNet."""
    source = pathlib.Path(source)
    if len(proto.layer) and len(proto.layers):
        raise SenetZooError(source, "has both V2 'layer' and V1 'layers' fields; Caffe refuses such a net")
    if len(proto.layer) + len(proto.layers) > MAX_LAYERS:
        raise SenetZooError(source, f"declares {len(proto.layer) + len(proto.layers)} layers, more than any Caffe "
                                    f"net ({MAX_LAYERS} at most)")
    layers = [_layer_from_message(m, i, source) for i, m in enumerate(proto.layer or proto.layers)]
    header = caffe_pb2.NetParameter()
    header.CopyFrom(proto)
    header.ClearField("layer")
    header.ClearField("layers")
    _check_text(header, "the net header", source)
    return CaffeNet(name=proto.name, layers=layers, source=source, input_shape=_input_shape(header, layers),
                    proto=header)


def _layer_message(layer: CaffeLayer) -> caffe_pb2.LayerParameter:
    """The layer's V2 message without blobs; the dataclass fields (name, type, bottoms, tops) win over ``proto``."""
    msg = caffe_pb2.LayerParameter()
    if layer.proto is not None:
        msg.CopyFrom(layer.proto)
        msg.ClearField("blobs")
    for name, value in (("name", layer.name), ("type", layer.type)):
        if value:
            setattr(msg, name, value)
        else:
            msg.ClearField(name)
    del msg.bottom[:]
    msg.bottom.extend(layer.bottoms)
    del msg.top[:]
    msg.top.extend(layer.tops)
    return msg


def _net_header(net: CaffeNet) -> caffe_pb2.NetParameter:
    header = caffe_pb2.NetParameter()
    if net.proto is not None:
        header.CopyFrom(net.proto)
        header.ClearField("layer")
        header.ClearField("layers")
    if net.name:
        header.name = net.name
    else:
        header.ClearField("name")
    return header


def net_to_proto(net: CaffeNet) -> caffe_pb2.NetParameter:
    """The net as a V2 NetParameter without blobs (what a prototxt holds)."""
    proto = _net_header(net)
    for layer in net.layers:
        proto.layer.append(_layer_message(layer))
    return proto


# ---------------------------------------------------------------------------------------------------------------
# Protobuf wire format


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


# ---------------------------------------------------------------------------------------------------------------
# Reading binary caffemodels

_NET_FIELDS = {1: (_LEN,), 2: (_LEN,), 3: (_LEN,), 4: (_VARINT, _LEN), 5: (_VARINT,), 6: (_LEN,), 7: (_VARINT,),
               8: (_LEN,), 100: (_LEN,)}
_LEGACY_DIMS = {1: "num", 2: "channels", 3: "height", 4: "width"}
_FLOAT_TAG, _DOUBLE_TAG = 5 << 3 | _I32, 8 << 3 | _I64  # non-packed data / double_data records (one byte each)

_MAGICS = [
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (a PyTorch checkpoint?)"), (b"\x1f\x8b", "a gzip file"),
    (b"\x93NUMPY", "a NumPy .npy file"), (b"BZh", "a bzip2 file"), (b"\xfd7zXZ", "an xz file"),
    (b"\x7fELF", "an executable"),
]


def _sniff(head: bytes) -> str | None:
    """What a file that is not a caffemodel looks like, for the error message (nothing is ever unpickled)."""
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return what
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle (a PyTorch checkpoint?)"
    if len(head) >= 10 and head[8:10] == b'{"':
        return "a safetensors file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return "a text file (a .prototxt? give it as --prototxt, and the binary .caffemodel as --caffemodel)"
    return None


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


def _open_for_reading(path: pathlib.Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise SenetZooError(path, "no such file") from None
    except IsADirectoryError:
        raise SenetZooError(path, "is a directory, not a file") from None
    except OSError as err:
        raise SenetZooError(path, f"cannot open: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SenetZooError(path, "is a directory, not a file" if path.is_dir() else "is not a regular file")
    return fd


def _read_binary(path: pathlib.Path, fd: int, size: int) -> CaffeNet:
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        return _BinaryReader(path, fd, mm, size).read()
    finally:
        try:
            mm.close()
        except BufferError:  # pragma: no cover - a numpy view kept alive by a traceback; freed with it
            pass


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file (Caffe's ``.caffemodel.h5`` snapshots), by its magic bytes."""
    with open(path, "rb") as f:
        return f.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC


def probe_weights(path: PathLike) -> None:
    """Refuse, from its first bytes, a file that cannot be a caffemodel (a prototxt, an image, a pickle, ...),
    so that the user hears what the file is before any advice about its hash."""
    path = pathlib.Path(path)
    fd = _open_for_reading(path)
    try:
        head = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    if not head:
        raise SenetZooError(path, "empty file, not a Caffe model")
    if head.startswith(_HDF5_MAGIC):
        return
    try:
        number, wt, *_ = next(_fields(head, 0, len(head), 1 << 62))
        fits = wt in _NET_FIELDS.get(number, ())
    except _WireError:
        fits = False
    if not fits:
        what = _sniff(head)
        raise SenetZooError(path, f"not a Caffe model: {what}" if what else
                            "not a Caffe model (its first bytes are no NetParameter field)")


def read_weights(path: PathLike) -> CaffeNet:
    """A binary caffemodel (V2 or legacy V1) or an HDF5 ``.caffemodel.h5``, chosen by the file's magic bytes."""
    path = pathlib.Path(path)
    fd = _open_for_reading(path)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise SenetZooError(path, "empty file, not a Caffe model")
        head = os.pread(fd, 8, 0)
        if head == _HDF5_MAGIC:
            return _read_hdf5(path)
        return _read_binary(path, fd, size)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------------
# HDF5 (Caffe's Net::ToHDF5 / CopyTrainedLayersFromHDF5)


def _read_hdf5(path: pathlib.Path) -> CaffeNet:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise SenetZooError(path, "HDF5 file without a 'data' group: not a Caffe .caffemodel.h5")
            layers: list[CaffeLayer] = []
            _hdf5_layers(data, "", layers, path)
    except SenetZooError:
        raise
    except RecursionError:
        raise SenetZooError(path, "HDF5 groups nested too deeply") from None
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        raise SenetZooError(path, f"unreadable HDF5 file (truncated or corrupt?): {err}") from None
    if not layers:
        raise SenetZooError(path, "HDF5 'data' group holds no layer blobs")
    return CaffeNet(name="", layers=layers, source=path, input_shape=None)


def _hdf5_layers(group, prefix: str, out: list[CaffeLayer], path: pathlib.Path, depth: int = 0) -> None:
    """Caffe writes group data/<layer name> with datasets "0", "1", ...; a '/' in a layer name nests groups, so
    a group is a layer when it holds digit-named datasets (groups without any, e.g. the empty groups Caffe
    writes for parameter-free layers, carry nothing and are skipped)."""
    import h5py

    if depth > MAX_HDF5_DEPTH:
        raise SenetZooError(path, f"HDF5 groups nested more than {MAX_HDF5_DEPTH} deep under 'data'")
    file_size = os.path.getsize(path)
    blobs: dict[int, np.ndarray] = {}
    children = []
    for key, item in group.items():
        if isinstance(item, h5py.Dataset):
            name = prefix.rstrip("/") or "/"
            if not (key.isascii() and key.isdigit()) or len(key) > 6:
                raise SenetZooError(path, f"layer '{name}': unexpected dataset '{key}' (Caffe names blobs 0, 1, ...)")
            if len(blobs) == MAX_BLOBS_PER_LAYER:
                raise SenetZooError(path, f"layer '{name}' has more than {MAX_BLOBS_PER_LAYER} blobs")
            if item.dtype.kind not in "fiu":
                raise SenetZooError(path, f"layer '{name}' blob {key}: dtype {item.dtype} is not numeric")
            if item.shape is None:
                raise SenetZooError(path, f"layer '{name}' blob {key}: empty dataspace (no shape)")
            # Checked against the bytes that exist before anything is allocated: Caffe writes plain,
            # contiguous datasets, so a dataset that stores fewer bytes than it declares (sparse, chunked
            # with unallocated chunks, compressed) is not Caffe's, and may declare gigabytes in a few bytes.
            declared = int(item.size) * item.dtype.itemsize
            stored = int(item.id.get_storage_size())
            if declared > stored or declared > file_size:
                raise SenetZooError(path, f"layer '{name}' blob {key}: declares {item.size} values "
                                          f"({_shape_str(item.shape)}, {declared} bytes) but stores {stored} bytes "
                                          "(sparse or compressed; Caffe writes plain datasets)")
            blobs[int(key)] = _as_array(item[()], np.float32)
        elif isinstance(item, h5py.Group):
            children.append((key, item))
        if len(out) + len(children) > MAX_LAYERS:
            raise SenetZooError(path, f"more than {MAX_LAYERS} layer groups under 'data'")
    if blobs:
        name = prefix.rstrip("/")
        if sorted(blobs) != list(range(len(blobs))):
            raise SenetZooError(path, f"layer '{name}': blobs {sorted(blobs)} are not numbered 0..{len(blobs) - 1}")
        out.append(CaffeLayer(name=name, type="", bottoms=[], tops=[], blobs=[blobs[i] for i in range(len(blobs))],
                              proto=None))
    for key, item in children:
        _hdf5_layers(item, f"{prefix}{key}/", out, path, depth + 1)


def write_caffemodel_h5(net: CaffeNet, path: PathLike) -> None:
    """Caffe's Net::ToHDF5 layout: group ``data``, one group per layer with blobs, float32 datasets "0", "1", ..."""
    import h5py

    path = pathlib.Path(path)
    seen: set[str] = set()
    for layer in net.param_layers():
        if not layer.name or layer.name in seen or layer.name.startswith("/") or "//" in layer.name:
            raise SenetZooError(path, f"cannot write layer name '{layer.name}' to HDF5 (empty, duplicate or not a "
                                      "relative path)")
        seen.add(layer.name)
    arrays = {layer.name: [_checked_array(b, f"layer '{layer.name}' blob {i}", path) for i, b in enumerate(layer.blobs)]
              for layer in net.param_layers()}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            data = f.create_group("data", track_order=True)
            for name, blobs in arrays.items():
                group = data.require_group(name)
                for i, blob in enumerate(blobs):
                    group.create_dataset(str(i), data=blob)


# ---------------------------------------------------------------------------------------------------------------
# Writing binary caffemodels (Caffe's Net::ToProto + WriteProtoToBinaryFile)


def _checked_array(blob, where: str, path) -> np.ndarray:
    try:
        return _as_array(blob, np.dtype("<f4"))
    except (TypeError, ValueError) as err:
        raise SenetZooError(path, f"{where}: not a float array ({err})") from None


def _blob_parts(blob, where: str, path) -> tuple[list, int]:
    """A blob as BlobProto bytes, in field-number order as C++ protobuf writes it: data (5) then shape (7)."""
    array = _checked_array(blob, where, path)
    parts: list = []
    if array.size:
        parts.append(_key(5, _LEN) + _encode_varint(array.nbytes))
        parts.append(array.reshape(-1))
    shape = caffe_pb2.BlobShape(dim=array.shape).SerializeToString()
    parts.append(_key(7, _LEN) + _encode_varint(len(shape)) + shape)
    return parts, sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)


def _input_layers_to_header(net: CaffeNet, header: caffe_pb2.NetParameter) -> list[CaffeLayer]:
    """For V1 output: Input layers become the net-level ``input``/``input_dim`` of the V1 era."""
    layers = []
    for layer in net.layers:
        if layer.type == "Input" and not layer.blobs:
            shapes = list(layer.proto.input_param.shape) if layer.proto is not None else []
            for i, top in enumerate(layer.tops):
                header.input.append(top)
                dims = list(shapes[min(i, len(shapes) - 1)].dim) if shapes else []
                if len(dims) == 4:
                    header.input_dim.extend(dims)
                else:
                    header.input_shape.add(dim=dims)
        else:
            layers.append(layer)
    return layers


def write_caffemodel(net: CaffeNet, path: PathLike, *, legacy_v1: bool = False) -> None:
    """A binary caffemodel as Caffe's Net::ToProto writes it: each layer's message with its blobs.

    ``legacy_v1`` writes the deprecated V1 ``layers`` field instead (for tests): Input layers become net-level
    ``input``/``input_dim``, and types V1 has no enum value for (BatchNorm, Scale, Axpy, ...) are written as
    type NONE with name, bottoms, tops and blobs only; reading gives those type "" and proto None.
    """
    path = pathlib.Path(path)
    header = _net_header(net)
    layers = _input_layers_to_header(net, header) if legacy_v1 else net.layers
    layer_key, blob_key, below = (_key(2, _LEN), _key(6, _LEN), 6) if legacy_v1 else (_key(100, _LEN), _key(7, _LEN), 7)
    records = []
    for index, layer in enumerate(layers):
        msg = _layer_message(layer)
        if legacy_v1:
            msg = _downgrade_v2(msg)
        head, tail = _split_fields(msg.SerializeToString(), below)
        parts: list = [head]
        for i, blob in enumerate(layer.blobs):
            blob_parts, blob_size = _blob_parts(blob, f"layer {index} '{layer.name}' blob {i}", path)
            parts.append(blob_key + _encode_varint(blob_size))
            parts.extend(blob_parts)
        parts.append(tail)
        size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
        records.append([layer_key + _encode_varint(size), *parts])
    header_bytes = header.SerializeToString()
    if legacy_v1:  # V1 'layers' (field 2) sits between name (1) and the input fields, as C++ orders it
        before, after = _split_fields(header_bytes, 2)
    else:
        before, after = header_bytes, b""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(before)
            for record in records:
                for part in record:
                    f.write(part if isinstance(part, bytes) else memoryview(part).cast("B"))
            f.write(after)


# ---------------------------------------------------------------------------------------------------------------
# Text prototxt


def read_prototxt(path: PathLike) -> CaffeNet:
    """A text-format NetParameter (V2 or V1 layers); blobs are empty unless the text holds some.

    Unknown fields are an error (with the line): our schema has every field of the layers the release uses and
    of common training layers, so an unknown field is a typo or another fork's layer we could not honour.
    """
    path = pathlib.Path(path)
    fd = _open_for_reading(path)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read()
    except OSError as err:
        raise SenetZooError(path, f"cannot read: {err.strerror}") from None
    finally:
        os.close(fd)
    if not raw.strip():
        raise SenetZooError(path, "empty file, not a prototxt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        what = _sniff(raw[:64])
        raise SenetZooError(path, f"not a text prototxt: {what or 'binary data'}"
                                  + ("" if what else " (a .caffemodel? read it with read_weights)")) from None
    proto = caffe_pb2.NetParameter()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as err:
        raise SenetZooError(path, f"not a valid Caffe prototxt: {err}") from None
    net = net_from_proto(proto, path)
    if not net.layers:
        raise SenetZooError(path, "no layers: not a Caffe net prototxt")
    return net


def write_prototxt(net: CaffeNet, path: PathLike) -> None:
    """The net as a text prototxt (V2 layers, without blobs)."""
    text = text_format.MessageToString(net_to_proto(net))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
