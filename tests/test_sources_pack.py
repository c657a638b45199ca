"""The other forms of an evaluation set written by ``sources.pack``, read back with outside readers: Python's
``tarfile`` for the tar and the shards (names, order, bytes, modes, the GNU format), pyarrow for the parquet
files (schema, rows, row groups). Every expectation is a literal."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from senet_zoo.validation.sources.pack import write_parquet, write_shards, write_tar


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "img"
    (root / "n01").mkdir(parents=True)
    for name, payload in {"a.JPEG": b"aa", "b.v2.JPEG": b"bbb", "c.JPEG": b"c", "d.JPEG": b"dddd",
                          "n01/e.JPEG": b"eeeee"}.items():
        (root / name).write_bytes(payload)
    return root


def members(path: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tf:
        return [(m.name, tf.extractfile(m).read() if m.isfile() else b"<dir>") for m in tf.getmembers()]


def test_a_tar_is_the_files_under_their_names_in_the_order_given(images, tmp_path):
    dest = tmp_path / "out" / "v.tar"
    assert write_tar(images, ["n01/e.JPEG", "a.JPEG"], dest) == dest
    assert members(dest) == [("n01/e.JPEG", b"eeeee"), ("a.JPEG", b"aa")]
    assert dest.read_bytes()[257:265] == b"ustar  \0"   # GNU tar's magic: the format ``tar cf`` writes
    assert sorted(p.name for p in dest.parent.iterdir()) == ["v.tar"]


@pytest.mark.parametrize("top", ["val", "val/"])
def test_a_tar_under_one_top_folder(images, tmp_path, top):
    dest = write_tar(images, ["a.JPEG", "n01", "n01/e.JPEG"], tmp_path / "v.tar", top=top)
    # a folder is added alone (its files only where named)
    assert members(dest) == [("val/a.JPEG", b"aa"), ("val/n01", b"<dir>"), ("val/n01/e.JPEG", b"eeeee")]


def test_shards_are_consecutive_runs_of_samples_keyed_by_the_file_stem(images, tmp_path):
    names = ["a.JPEG", "b.v2.JPEG", "c.JPEG", "d.JPEG", "n01/e.JPEG"]
    dest = tmp_path / "deep" / "wds"
    paths = write_shards(images, names, [np.int64(7), 1, 2, 3, 999], dest, shards=2)
    assert paths == [dest / "val-000000.tar", dest / "val-000001.tar"]
    first, second = members(paths[0]), members(paths[1])
    assert first == [
        ("a.jpg", b"aa"), ("a.cls", b"7"), ("a.json", b'{"filename": "a.JPEG", "label": 7}'),
        ("b.v2.jpg", b"bbb"), ("b.v2.cls", b"1"), ("b.v2.json", b'{"filename": "b.v2.JPEG", "label": 1}'),
        ("c.jpg", b"c"), ("c.cls", b"2"), ("c.json", b'{"filename": "c.JPEG", "label": 2}'),
    ]
    assert second == [
        ("d.jpg", b"dddd"), ("d.cls", b"3"), ("d.json", b'{"filename": "d.JPEG", "label": 3}'),
        ("e.jpg", b"eeeee"), ("e.cls", b"999"), ("e.json", b'{"filename": "e.JPEG", "label": 999}'),
    ]
    assert paths[0].read_bytes()[257:265] == b"ustar  \0"
    with tarfile.open(paths[1]) as tf:
        assert {(m.mode, m.mtime, m.size, m.type) for m in tf.getmembers()[:2]} == {
            (0o644, 0, 4, tarfile.REGTYPE), (0o644, 0, 1, tarfile.REGTYPE)}
    assert sorted(p.name for p in dest.iterdir()) == ["val-000000.tar", "val-000001.tar"]


def test_shards_without_json_and_with_another_pattern(images, tmp_path):
    paths = write_shards(images, ["a.JPEG", "c.JPEG", "d.JPEG"], [4, 5, 6], tmp_path, shards=3,
                         pattern="train-{:02d}.tar", with_json=False)
    assert paths == [tmp_path / "train-00.tar", tmp_path / "train-01.tar", tmp_path / "train-02.tar"]
    assert [members(p) for p in paths] == [[("a.jpg", b"aa"), ("a.cls", b"4")], [("c.jpg", b"c"), ("c.cls", b"5")],
                                           [("d.jpg", b"dddd"), ("d.cls", b"6")]]
    assert json.dumps(6) == "6"


def test_parquet_files_in_the_hubs_image_layout(images, tmp_path):
    names = ["a.JPEG", "b.v2.JPEG", "c.JPEG", "d.JPEG", "n01/e.JPEG"]
    dest = tmp_path / "deep" / "pq"
    paths = write_parquet(images, names, [np.int64(7), 1, 2, 3, 999], dest, files=2, row_group_size=2)
    assert paths == [dest / "validation-00000-of-00002.parquet", dest / "validation-00001-of-00002.parquet"]
    assert pq.read_schema(paths[0]) == pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())])
    assert pq.read_table(paths[0]).to_pylist() == [
        {"image": {"bytes": b"aa", "path": "a.JPEG"}, "label": 7},
        {"image": {"bytes": b"bbb", "path": "b.v2.JPEG"}, "label": 1},
        {"image": {"bytes": b"c", "path": "c.JPEG"}, "label": 2}]
    assert pq.read_table(paths[1]).to_pylist() == [
        {"image": {"bytes": b"dddd", "path": "d.JPEG"}, "label": 3},
        {"image": {"bytes": b"eeeee", "path": "e.JPEG"}, "label": 999}]
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in paths] == [2, 1]
    assert sorted(p.name for p in dest.iterdir()) == [p.name for p in paths]


def test_parquet_row_groups_of_a_hundred_rows_by_default(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    names = [f"{i}.JPEG" for i in range(101)]
    for n in names:
        (root / n).write_bytes(n.encode())
    (path,) = write_parquet(root, names, list(range(101)), tmp_path, pattern="v{}-{}.parquet")
    assert path == tmp_path / "v0-1.parquet"
    meta = pq.ParquetFile(path).metadata
    assert (meta.num_rows, meta.num_row_groups, meta.row_group(0).num_rows) == (101, 2, 100)


def test_a_top_folder_ending_in_x_and_a_sample_two_folders_deep(images, tmp_path):
    (images / "n01" / "sub").mkdir()
    (images / "n01" / "sub" / "f.JPEG").write_bytes(b"ff")
    assert members(write_tar(images, ["a.JPEG"], tmp_path / "v.tar", top="MAX")) == [("MAX/a.JPEG", b"aa")]
    (shard,) = write_shards(images, ["n01/sub/f.JPEG"], [5], tmp_path / "s", shards=1)
    assert members(shard) == [("f.jpg", b"ff"), ("f.cls", b"5"), ("f.json", b'{"filename": "f.JPEG", "label": 5}')]


def test_a_parquet_file_of_no_rows_keeps_the_image_schema(images, tmp_path):
    paths = write_parquet(images, ["a.JPEG"], [3], tmp_path, files=2)
    assert pq.read_table(paths[1]).num_rows == 0
    assert pq.read_schema(paths[1]) == pa.schema([
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("label", pa.int64())])


def test_a_parquet_row_two_folders_deep_keeps_the_file_name(images, tmp_path):
    (images / "n01" / "sub").mkdir()
    (images / "n01" / "sub" / "f.JPEG").write_bytes(b"ff")
    (path,) = write_parquet(images, ["n01/sub/f.JPEG"], [5], tmp_path)
    assert pq.read_table(path).to_pylist() == [{"image": {"bytes": b"ff", "path": "f.JPEG"}, "label": 5}]
