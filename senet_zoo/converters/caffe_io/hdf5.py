"""Reading HDF5 ``.caffemodel.h5`` weights (Caffe's Net::ToHDF5 / CopyTrainedLayersFromHDF5): layer names and
blobs only, checked against the bytes the file really stores before anything is allocated. h5py is imported
only when such a file is read."""
from __future__ import annotations

import os
import pathlib

import numpy as np

from ...errors import SenetZooError
from .schema import MAX_BLOBS_PER_LAYER, MAX_HDF5_DEPTH, MAX_LAYERS, CaffeLayer, CaffeNet, _as_array, _shape_str

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
