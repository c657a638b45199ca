"""A caffemodel, whichever its format: :func:`probe_weights` refuses a file that cannot be one from its first
bytes, :func:`read_weights` hands it to the binary or the HDF5 reader by its magic bytes."""
from __future__ import annotations

import os
import pathlib

from ...errors import SenetZooError
from .binary import _NET_FIELDS, _read_binary
from .hdf5 import _read_hdf5
from .schema import CaffeNet, PathLike
from .sniff import _HDF5_MAGIC, _open_for_reading, _sniff
from .wire import _VARINT, _varint, _WireError

def probe_weights(path: PathLike) -> None:
    """Refuse, from its first bytes, a file that cannot be a caffemodel (a prototxt, an image, a pickle, ...),
    so that the user hears what the file is before any advice about its hash."""
    path = pathlib.Path(path)
    fd = _open_for_reading(path)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    if not head:
        raise SenetZooError(path, "empty file, not a Caffe model")
    if head.startswith(_HDF5_MAGIC):
        return
    # The first field must be one of NetParameter's, its value within the file: not within these 64 bytes, as
    # a net without a name starts with its first layer, kilobytes long. (Every NetParameter field is a varint
    # or has a varint length.)
    try:
        key, pos = _varint(head, 0, len(head), len(head))
        fits = (key & 7) in _NET_FIELDS.get(key >> 3, ())
        if fits:
            value, pos = _varint(head, pos, len(head), len(head))
            fits = key & 7 == _VARINT or pos + value <= size
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
