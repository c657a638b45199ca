"""Opening a user's file for reading (a regular file or a one-line error), and telling from its first bytes what
a file that is not what we expected looks like (an image, a pickle, a prototxt, ...) or whether it is HDF5.
Nothing is ever unpickled."""
from __future__ import annotations

import os
import pathlib
import stat

from ...errors import SenetZooError
from .schema import PathLike

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


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: PathLike) -> bool:
    """Whether ``path`` is an HDF5 file (Caffe's ``.caffemodel.h5`` snapshots), by its magic bytes."""
    with open(path, "rb") as f:
        return f.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
