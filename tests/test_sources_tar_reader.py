"""Members of tar files read in place (``sources.tar.reader``): bytes at hand-written offsets of a file made
here, a sparse member put together as ``tar -x`` writes it (chunks at their offsets, zeros between), and the
descriptors a reader holds (one per container and process, none carried across a pickle), counted in
/proc/self/fd. Every expectation is a literal."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from senet_zoo.images.preprocess import BadImage
from senet_zoo.validation.sources.tar import reader as tar_reader
from senet_zoo.validation.sources.tar.reader import ShortRead, TarReader, member_bytes
from support.descriptors import needs_proc, open_fds

@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "v.tar"
    path.write_bytes(b"\0" * 512 + b"0123456789" + b"AAAABB" + b"\0" * 496)
    return path


def test_a_member_is_its_size_in_bytes_from_its_data_offset(archive):
    fd = os.open(archive, os.O_RDONLY)
    try:
        assert member_bytes(fd, 512, 10) == b"0123456789"
        assert member_bytes(fd, 515, 3, None) == b"345"
        assert member_bytes(fd, 512, 0) == b""
        with pytest.raises(ShortRead) as e:
            member_bytes(fd, 512, 2000)
        assert str(e.value) == "512 of 2,000 bytes"
    finally:
        os.close(fd)


def test_a_sparse_member_is_its_chunks_at_their_offsets_in_zeros(archive):
    fd = os.open(archive, os.O_RDONLY)
    try:
        # stored one after another from 522: "AAAA" then "BB"
        assert member_bytes(fd, 522, 14, ((2, 4), (10, 2))) == b"\0\0AAAA\0\0\0\0BB\0\0"
        assert member_bytes(fd, 522, 6, ((0, 4), (4, 2))) == b"AAAABB"
        assert member_bytes(fd, 522, 5, ((0, 0), (5, 0))) == bytes(5)
        with pytest.raises(ShortRead) as e:
            member_bytes(fd, 1020, 4000, ((0, 1000), (3000, 1000)))
        assert str(e.value) == "4 of 2,000 bytes of a sparse file"
    finally:
        os.close(fd)


def test_a_reader_reads_each_entry_and_names_it(archive, tmp_path):
    os.utime(archive, ns=(1 << 40, 1 << 40))
    r = TarReader([archive, tmp_path / "gone.tar"], [(0, "a/x.JPEG", 512, 10), (0, "s.JPEG", 522, 14, ((2, 4), (10, 2))),
                                                    (1, "g.JPEG", 512, 3)])
    assert r.kind == "tar" and len(r) == 3 and TarReader([], [], kind="wds").kind == "wds"
    assert r.read(0) == b"0123456789" and r.read(1) == b"\0\0AAAA\0\0\0\0BB\0\0"
    assert r.where(0) == f"{archive}:a/x.JPEG" and r.where(2) == f"{tmp_path}/gone.tar:g.JPEG"
    assert r.members() == ["v.tar:a/x.JPEG\t10", "v.tar:s.JPEG\t14", "gone.tar:g.JPEG\t3"]
    # the container's mtime_ns mixed with the member's offset; a container that is not there counts as -1
    assert r.identity() == [("v.tar:a/x.JPEG", 10, (1 << 40) + 512), ("v.tar:s.JPEG", 14, (1 << 40) + 522),
                            ("gone.tar:g.JPEG", 3, -513)]
    with pytest.raises(BadImage) as e:
        r.read(2)
    assert str(e.value) == f"cannot read {tmp_path}/gone.tar:g.JPEG (No such file or directory)"
    r.close()


def test_a_member_the_archive_no_longer_holds_is_a_bad_image(archive):
    r = TarReader([str(archive)], [(0, "a.JPEG", 1000, 100), (0, "s.JPEG", 1020, 9000, ((0, 10), (5000, 10)))])
    with pytest.raises(BadImage) as e:
        r.read(0)
    assert str(e.value) == f"{archive}:a.JPEG: truncated (24 of 100 bytes)"
    with pytest.raises(BadImage) as e:
        r.read(1)
    assert str(e.value) == f"{archive}:s.JPEG: truncated (4 of 20 bytes of a sparse file)"
    r.close()


@needs_proc
def test_one_descriptor_per_container_and_process_closed_by_close(archive, monkeypatch):
    before = open_fds()
    r = TarReader([archive, archive], [(0, "a", 512, 2), (1, "b", 514, 2), (0, "c", 516, 2)])
    assert [r.read(i) for i in (0, 1, 2, 0, 1)] == [b"01", b"23", b"45", b"01", b"23"]
    assert open_fds() == before + 2
    # a forked DataLoader worker (another pid) opens descriptors of its own
    monkeypatch.setattr(tar_reader.os, "getpid", lambda: -7)
    assert r.read(2) == b"45" and r.read(0) == b"01"
    assert open_fds() == before + 3
    monkeypatch.undo()
    r.close()
    r.close()
    assert open_fds() <= before + 2
    assert r.read(1) == b"23"      # reopened when read again
    r.close()


def test_a_pickled_reader_carries_no_descriptor(archive):
    r = TarReader([archive], [(0, "a", 512, 4)])
    assert r.read(0) == b"0123"
    copy = pickle.loads(pickle.dumps(r))
    pickle.loads(pickle.dumps(r)).close()   # closing a copy that never read leaves the original's descriptor
    assert r.read(0) == b"0123"
    r.close()                      # the original's descriptor is gone; the copy opens its own
    assert copy.read(0) == b"0123" and copy.where(0) == f"{archive}:a" and copy.kind == "tar"
    copy.close()
