"""The HDF5 ``.caffemodel.h5`` reader against files built by hand with h5py in Caffe's layout (Net::ToHDF5:
``data/<layer name>/<blob index>``, a '/' in a layer name nesting groups), each expectation written out: the
layer names and blob values read back, or the exact one-line error for a file Caffe never writes."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from senet_zoo.converters import caffe_io
from senet_zoo.converters.caffe_io import hdf5
from senet_zoo.errors import SenetZooError

h5py = pytest.importorskip("h5py")


def build(path, datasets: dict, groups: tuple = (), **kwargs):
    """An HDF5 file with the given datasets (path inside the file -> array or h5py.Empty) and empty groups."""
    with h5py.File(path, "w") as f:
        for name in groups:
            f.require_group(name)
        for name, value in datasets.items():
            f.create_dataset(name, data=value, **kwargs)
    return path


def refused(path) -> str:
    with pytest.raises(SenetZooError) as info:
        caffe_io.read_weights(path)
    assert info.value.path == str(path) and info.value.exit_code == 2
    return info.value.message


def layers_of(path) -> dict[str, list[list]]:
    net = caffe_io.read_weights(path)
    assert net.name == "" and net.input_shape is None and net.source == path and net.proto is None
    for layer in net.layers:
        assert layer.type == "" and layer.proto is None and layer.bottoms == [] and layer.tops == []
        assert layer.legacy_shapes == ()
        for blob in layer.blobs:
            assert blob.dtype == np.float32 and blob.flags.c_contiguous
    return {layer.name: [b.tolist() for b in layer.blobs] for layer in net.layers}


# --- what is read ------------------------------------------------------------------------------------------------


def test_nested_names_shapes_and_values(tmp_path):
    path = build(tmp_path / "m.caffemodel.h5", {
        "data/conv1/0": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
        "data/conv1/1": np.array([0.5], np.float32),
        "data/conv1/bn/0": np.array([1.0, 2.0], np.float64),  # a layer nested under a layer, read after it
        "data/a/b/c/0": np.array(7, np.int32),  # 0-d, integer: read as a float32 scalar
        "data/u/0": np.array([255, 0], np.uint8),
        "data/h/0": np.array([1.5, -2.25], np.float16),
    }, groups=("data/relu", "data/empty/nested", "diff/conv1"))
    net = caffe_io.read_weights(path)
    shapes = {layer.name: [b.shape for b in layer.blobs] for layer in net.layers}
    assert shapes == {"a/b/c": [()], "conv1": [(1, 1, 2, 3), (1,)], "conv1/bn": [(2,)], "h": [(2,)], "u": [(2,)]}
    assert list(layers_of(path).items()) == [  # h5py lists names alphabetically; a layer before its sub-groups
        ("a/b/c", [7.0]),
        ("conv1", [[[[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]], [0.5]]),
        ("conv1/bn", [[1.0, 2.0]]),
        ("h", [[1.5, -2.25]]),
        ("u", [[255.0, 0.0]]),
    ]


def test_blob_index_order_not_name_order(tmp_path):
    """HDF5 lists "10" before "2"; the blobs come back in index order (as Caffe's CopyTrainedLayersFromHDF5)."""
    datasets = {f"data/many/{i}": np.array([float(i)], np.float32) for i in range(12)}
    assert layers_of(build(tmp_path / "m.h5", datasets)) == {"many": [[float(i)] for i in range(12)]}


def test_six_digit_blob_names_and_a_dataset_right_under_data(tmp_path):
    path = build(tmp_path / "m.h5", {"data/x/000000": np.array([1.0]), "data/x/000001": np.array([2.0]),
                                     "data/0": np.array([3.0])})
    assert layers_of(path) == {"": [[3.0]], "x": [[1.0], [2.0]]}


def test_64_blobs_and_64_levels_are_read(tmp_path):
    many = {f"data/l/{i}": np.array([i], np.float32) for i in range(64)}
    assert len(layers_of(build(tmp_path / "blobs.h5", many))["l"]) == 64
    deep = "/".join(["g"] * 64)
    assert layers_of(build(tmp_path / "deep.h5", {f"data/{deep}/0": np.array([1.0])})) == {deep: [[1.0]]}


# --- what is refused ---------------------------------------------------------------------------------------------


def test_no_data_group(tmp_path):
    expected = "HDF5 file without a 'data' group: not a Caffe .caffemodel.h5"
    assert refused(build(tmp_path / "a.h5", {"weights": np.zeros(3)})) == expected
    assert refused(build(tmp_path / "b.h5", {"data": np.zeros(3)})) == expected  # a dataset, not a group


def test_no_blobs(tmp_path):
    path = build(tmp_path / "m.h5", {}, groups=("data/relu", "data/pool/x"))
    assert refused(path) == "HDF5 'data' group holds no layer blobs"


@pytest.mark.parametrize("key", ["w", "0a", "-1", "\u0661", "0000000"])
def test_dataset_names_caffe_never_writes(tmp_path, key):
    path = build(tmp_path / "m.h5", {f"data/conv/{key}": np.zeros(2, np.float32)})
    assert refused(path) == f"layer 'conv': unexpected dataset '{key}' (Caffe names blobs 0, 1, ...)"


def test_unexpected_dataset_right_under_data_names_the_root(tmp_path):
    path = build(tmp_path / "m.h5", {"data/w": np.zeros(2, np.float32)})
    assert refused(path) == "layer '/': unexpected dataset 'w' (Caffe names blobs 0, 1, ...)"


def test_65_blobs(tmp_path):
    path = build(tmp_path / "m.h5", {f"data/l/{i}": np.array([i], np.float32) for i in range(65)})
    assert refused(path) == "layer 'l' has more than 64 blobs"


def test_65_levels(tmp_path):
    deep = "/".join(["g"] * 65)
    path = build(tmp_path / "m.h5", {f"data/{deep}/0": np.array([1.0])})
    assert refused(path) == "HDF5 groups nested more than 64 deep under 'data'"


@pytest.mark.parametrize("value, dtype", [(np.array([True, False]), "bool"), (np.array([1 + 2j]), "complex128"),
                                          (np.array([b"ab"]), "|S2")])
def test_non_numeric_blob(tmp_path, value, dtype):
    path = build(tmp_path / "m.h5", {"data/conv/0": value})
    assert refused(path) == f"layer 'conv' blob 0: dtype {dtype} is not numeric"


def test_empty_dataspace(tmp_path):
    path = build(tmp_path / "m.h5", {"data/conv/0": h5py.Empty("<f4")})
    assert refused(path) == "layer 'conv' blob 0: empty dataspace (no shape)"


def test_blobs_not_numbered_from_zero(tmp_path):
    path = build(tmp_path / "a.h5", {"data/conv/0": np.zeros(1), "data/conv/2": np.zeros(1)})
    assert refused(path) == "layer 'conv': blobs [0, 2] are not numbered 0..1"
    path = build(tmp_path / "b.h5", {"data/x/y/1": np.zeros(1)})
    assert refused(path) == "layer 'x/y': blobs [1] are not numbered 0..0"


def test_unallocated_chunks_in_a_large_file(tmp_path):
    """A chunked dataset never written stores nothing: refused even where the file is larger than it declares."""
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/big/0", data=np.ones(100_000, np.float32))
        f.create_dataset("data/sparse/0", shape=(2, 5), dtype="<f4", chunks=(1, 5))
    assert path.stat().st_size > 40 * 2
    assert refused(path) == ("layer 'sparse' blob 0: declares 10 values (2x5, 40 bytes) but stores 0 bytes "
                             "(sparse or compressed; Caffe writes plain datasets)")


def test_compressed_blob(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/z/0", data=np.zeros((100, 100), np.float32), compression="gzip")
    message = refused(path)
    assert message.startswith("layer 'z' blob 0: declares 10000 values (100x100, 40000 bytes) but stores ")
    assert message.endswith(" bytes (sparse or compressed; Caffe writes plain datasets)")


def test_declares_more_than_the_whole_file(tmp_path, monkeypatch):
    """The file-size bound alone: a dataset whose storage the library reports as large as it declares, yet larger
    than the file (a file cut short after its metadata, or an external dataset)."""
    path = build(tmp_path / "m.h5", {"data/c/0": np.zeros(1000, np.float32)})
    monkeypatch.setattr(hdf5.os.path, "getsize", lambda p: 3999)
    assert refused(path) == ("layer 'c' blob 0: declares 1000 values (1000, 4000 bytes) but stores 4000 bytes "
                             "(sparse or compressed; Caffe writes plain datasets)")
    monkeypatch.setattr(hdf5.os.path, "getsize", lambda p: 4000)
    assert layers_of(path) == {"c": [[0.0] * 1000]}


def test_more_layer_groups_than_the_limit(tmp_path, monkeypatch):
    groups = {f"data/l{i}/0": np.array([float(i)]) for i in range(4)}
    path = build(tmp_path / "m.h5", groups)
    monkeypatch.setattr(hdf5, "MAX_LAYERS", 4)
    assert layers_of(path) == {f"l{i}": [[float(i)]] for i in range(4)}
    monkeypatch.setattr(hdf5, "MAX_LAYERS", 3)
    assert refused(path) == "more than 3 layer groups under 'data'"


def test_layer_groups_counted_across_levels(tmp_path, monkeypatch):
    """The bound counts the layers already read plus the groups still to visit, at every level."""
    path = build(tmp_path / "m.h5", {"data/a/0": np.zeros(1), "data/b/x/0": np.zeros(1), "data/b/y/0": np.zeros(1)})
    monkeypatch.setattr(hdf5, "MAX_LAYERS", 2)  # 'a' read, then 'b' holds two groups: 1 + 2 > 2
    assert refused(path) == "more than 2 layer groups under 'data'"
    monkeypatch.setattr(hdf5, "MAX_LAYERS", 3)
    assert list(layers_of(path)) == ["a", "b/x", "b/y"]


def test_recursion_exhausted(tmp_path, monkeypatch):
    deep = "/".join(["g"] * 300)
    path = build(tmp_path / "m.h5", {f"data/{deep}/0": np.array([1.0])})
    monkeypatch.setattr(hdf5, "MAX_HDF5_DEPTH", 10_000)
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 150)
    try:
        message = refused(path)
    finally:
        sys.setrecursionlimit(old)
    assert message == "HDF5 groups nested too deeply"


def test_truncated_file(tmp_path):
    good = build(tmp_path / "good.h5", {"data/c/0": np.arange(5000, dtype=np.float32)})
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:4096])
    assert refused(cut).startswith("unreadable HDF5 file (truncated or corrupt?): ")


def test_unexpected_dataset_names_the_whole_layer(tmp_path):
    """Only the trailing '/' of the group path goes: a layer name ending in other letters is kept whole."""
    path = build(tmp_path / "m.h5", {"data/fc/bias_X/w": np.zeros(2, np.float32)})
    assert refused(path) == "layer 'fc/bias_X': unexpected dataset 'w' (Caffe names blobs 0, 1, ...)"


def test_layer_names_ending_in_other_letters_are_kept_whole(tmp_path):
    path = build(tmp_path / "m.h5", {"data/fc/bias_X/0": np.ones(1, np.float32), "data/X/0": np.ones(1)})
    assert layers_of(path) == {"X": [[1.0]], "fc/bias_X": [[1.0]]}
