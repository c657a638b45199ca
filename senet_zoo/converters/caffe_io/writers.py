"""Writing caffemodels as Caffe does: binary (Net::ToProto + WriteProtoToBinaryFile, V2 or legacy V1) and HDF5
(Net::ToHDF5). Used by the synthetic release (tests, demo); every write is atomic."""
from __future__ import annotations

import pathlib

import numpy as np

from ...errors import SenetZooError
from ...files import atomic_path
from .. import caffe_pb2
from .schema import CaffeLayer, CaffeNet, PathLike, _as_array, _downgrade_v2, _layer_message, _net_header
from .wire import _LEN, _encode_varint, _key, _split_fields

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
