"""Images read as files (``sources.folder``): the bytes, the path an error names, and the identity a cache of
decoded images is keyed by (name, size, mtime_ns; -1, -1 for a file that is gone), on files made here."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from senet_zoo.images.preprocess import BadImage
from senet_zoo.validation.sources.folder import FolderReader, PathListReader


def test_a_folder_reader_reads_its_names_under_its_root(tmp_path):
    (tmp_path / "n01").mkdir()
    (tmp_path / "n01" / "a.JPEG").write_bytes(b"abc")
    (tmp_path / "b.JPEG").write_bytes(b"b" * 10)
    os.utime(tmp_path / "n01" / "a.JPEG", ns=(5, 1_600_000_000_123_456_789))
    os.utime(tmp_path / "b.JPEG", ns=(5, 42))
    names = ["n01/a.JPEG", "b.JPEG", "gone.JPEG"]
    r = FolderReader(tmp_path, names)
    names.append("late.JPEG")          # the reader keeps its own list
    assert r.kind == "folder" and len(r) == 3 and r.root == str(tmp_path)
    assert r.read(0) == b"abc" and r.read(1) == b"b" * 10
    assert r.path(0) == f"{tmp_path}/n01/a.JPEG" and r.where(1) == tmp_path / "b.JPEG"
    assert isinstance(r.where(1), Path)
    assert r.identity() == [("n01/a.JPEG", 3, 1_600_000_000_123_456_789), ("b.JPEG", 10, 42),
                            ("gone.JPEG", -1, -1)]
    with pytest.raises(BadImage, match=r"^cannot read it \(No such file or directory\)$"):
        r.read(2)


def test_a_path_list_reader_reads_the_paths_themselves(tmp_path):
    (tmp_path / "a.JPEG").write_bytes(b"A")
    os.utime(tmp_path / "a.JPEG", ns=(1, 77))
    r = PathListReader([tmp_path / "a.JPEG", str(tmp_path / "missing.JPEG")])
    assert r.names == [f"{tmp_path}/a.JPEG", f"{tmp_path}/missing.JPEG"] and r.root == "" and len(r) == 2
    assert r.read(0) == b"A" and r.path(1) == f"{tmp_path}/missing.JPEG"
    assert r.where(0) == tmp_path / "a.JPEG"
    assert r.identity() == [(f"{tmp_path}/a.JPEG", 1, 77), (f"{tmp_path}/missing.JPEG", -1, -1)]
