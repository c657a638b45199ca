"""Text prototxts: reading one (V2 or V1 layers, unknown fields refused with their line) and writing a net as one
(V2 layers, no blobs; atomic)."""
from __future__ import annotations

import os
import pathlib

from google.protobuf import text_format

from ...errors import SenetZooError
from ...files import atomic_path
from .. import caffe_pb2
from .schema import CaffeNet, PathLike, net_from_proto, net_to_proto
from .sniff import _open_for_reading, _sniff

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
