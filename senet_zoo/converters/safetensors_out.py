"""Writing ``model.safetensors`` with the same bytes on every run.

``safetensors.numpy.save_file`` serialises ``__metadata__`` from a Rust hash map, so its key order (and with
it the file's sha256, which validation records are bound to) changes from run to run. We write the format
ourselves: 8-byte little-endian header length, a JSON header (``__metadata__`` first with sorted keys, then
the tensors in data order), padded with spaces to a multiple of 8, then the raw little-endian tensor data.
Tensors are laid out as the library lays them out (larger alignment first, then by name), so every tensor
starts aligned to its element size; the tests read the result back with ``safetensors`` itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64",
           np.dtype("<i4"): "I32", np.dtype("<i2"): "I16", np.dtype("i1"): "I8", np.dtype("u1"): "U8",
           np.dtype("bool"): "BOOL"}


def header_bytes(state: dict[str, np.ndarray], metadata: dict[str, str]) -> tuple[bytes, list[tuple[str, np.ndarray]]]:
    """(length prefix + padded JSON header, tensors in data order as little-endian C-contiguous arrays)."""
    arrays = []
    for name, value in state.items():
        array = np.asarray(value)
        dtype = array.dtype if array.dtype.itemsize == 1 else array.dtype.newbyteorder("<")
        if dtype not in _DTYPES:
            raise TypeError(f"tensor {name}: dtype {array.dtype} has no safetensors name here")
        array = array.astype(dtype, copy=False)
        if not array.flags.c_contiguous:  # np.ascontiguousarray would turn a 0-d tensor into 1-d
            array = array.copy(order="C")
        arrays.append((name, array))
    arrays.sort(key=lambda item: (-item[1].dtype.itemsize, item[0]))
    header: dict[str, object] = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}} if metadata else {}
    offset = 0
    for name, array in arrays:
        header[name] = {"dtype": _DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, arrays


def write_safetensors(state: dict[str, np.ndarray], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """``state`` as a safetensors file at ``path`` (callers make it atomic); no copy of the weights is made."""
    head, arrays = header_bytes(state, metadata)
    with open(Path(path), "wb") as f:
        f.write(head)
        for _, array in arrays:
            if array.nbytes:
                f.write(memoryview(array.reshape(-1)).cast("B"))
