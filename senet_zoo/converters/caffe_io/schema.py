"""The Caffe net in memory (:class:`CaffeNet` of :class:`CaffeLayer`), the limits every reader enforces, Caffe's
V1 -> V2 layer upgrade (and the downgrade our legacy writer uses), and conversion between protobuf messages and
``CaffeNet``. Every reader and writer of this package builds on it."""
from __future__ import annotations

import math
import os
import pathlib
from dataclasses import dataclass, field

import numpy as np

from ...errors import SenetZooError
from .. import caffe_pb2

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
