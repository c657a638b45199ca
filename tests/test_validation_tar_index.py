"""The kept tar index (``sources/tar/index.py``): used only while it is the archive's, rebuilt otherwise. The
expectation is what ``tarfile`` reads from the archive itself (each member's header offset, data offset and
size) and the index file as first written. Named after the module, so that under mutmut (``tests/conftest.py``)
these quick tests run first."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from senet_zoo.validation.sources.tar import index as tar_index

BLOCK = 512


def _tar(path: Path, names: list[str], size: int = 40) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for n in names:
            ti = tarfile.TarInfo(n)
            ti.size, ti.mtime = size, 1_500_000_000
            tf.addfile(ti, io.BytesIO(n[:1].encode() * size))
    return path


def _members(path: Path) -> list[tuple[int, str, int, int]]:
    """What tarfile reads: (header offset, name, data offset, size) of each member."""
    with tarfile.open(path) as tf:
        return [(m.offset, m.name, m.offset_data, m.size) for m in tf.getmembers()]


def _got(headers) -> list[tuple[int, str, int, int]]:
    return [(h.offset, h.name, h.data, h.size) for h in headers]


@pytest.fixture
def walks(monkeypatch):
    """The tars whose headers were walked (not taken from a kept index)."""
    calls: list[Path] = []
    real = tar_index.walk
    monkeypatch.setattr(tar_index, "walk", lambda path, size: calls.append(path) or real(path, size))
    monkeypatch.setattr(tar_index, "RANDOM", 0)   # the header sample without its random draw
    return calls


def _kept(index_dir: Path) -> Path:
    (found,) = index_dir.glob("*.json")
    return found


def test_the_index_folder_is_under_xdg_cache_home_else_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tar_index.default_index_dir() == tmp_path / "xdg" / "senet-zoo" / "tar-index"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tar_index.default_index_dir() == tmp_path / "home" / ".cache" / "senet-zoo" / "tar-index"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tar_index.default_index_dir() == tmp_path / "home" / ".cache" / "senet-zoo" / "tar-index"


def test_an_index_is_kept_per_tar_and_used_while_the_tar_is_unchanged(tmp_path, walks):
    # two tars of the same name in two folders, one index folder; a name that is not UTF-8 too
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    tars = [_tar(tmp_path / "a" / "val.tar", ["x.JPEG", "y.JPEG"]), _tar(tmp_path / "b" / "val.tar", ["z.JPEG"]),
            _tar(tmp_path / os.fsdecode(b"\xff.tar"), ["w.JPEG"]),
            _tar(tmp_path / "zero.tar", ["v.JPEG", "u.JPEG"], size=0)]   # the last data ends where the archive does
    for _ in range(2):
        for t in tars:
            headers, notes = tar_index.tar_headers(t, tmp_path / "index")
            assert _got(headers) == _members(t) and notes == []
    assert walks == tars                       # each walked once, then read from its own index
    assert len(list((tmp_path / "index").glob("val.tar.*.json"))) == 2
    assert [m[3] for m in _members(tars[3])] == [0, 0]
    # without an index folder: the default one
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    try:
        tar_index.tar_headers(tars[0])
        assert len(list((tmp_path / "xdg" / "senet-zoo" / "tar-index").glob("val.tar.*.json"))) == 1
    finally:
        del os.environ["XDG_CACHE_HOME"]


def _doctor(rows: list, end: int, how: str, size: int) -> tuple[list, int]:
    r0, r1 = rows[0], rows[1]
    if how == "end past the last block":
        end = size - BLOCK + 1
    elif how == "end negative":
        end = -BLOCK
    elif how == "end not an integer":
        end = float(end)
    elif how == "end true":
        end = True
    elif how == "offset not an integer":
        r1[0] = float(r1[0])
    elif how == "data not an integer":
        r1[3] = str(r1[3])
    elif how == "size not an integer":
        r1[4] = float(r1[4])
    elif how == "unknown kind":
        r1[1] = "fifo"
    elif how == "name not a string":
        r1[2] = 7
    elif how == "link not a string":
        r1[5] = None
    elif how == "digest not a string":
        r1[7] = 0
    elif how == "sparse chunk of three":
        r1[6] = [[0, 10, 30]]
    elif how == "sparse negative":
        r1[6] = [[-1, 40]]
    elif how == "sparse not integers":
        r1[6] = [[0.0, 40]]
    elif how == "offsets out of order":
        rows[0], rows[1] = r1, r0
    elif how == "data before its header":
        r1[3] = r1[0]
    elif how == "data past the end":
        r1[3] = end + 1
    elif how == "negative size":
        r1[4] = -1
    elif how == "data running past the end":
        r1[4] = end - r1[3] + 1
    elif how == "sparse data running past the end":
        r1[6] = [[0, 20], [100, end - r1[3] - 20 + 1]]
    elif how == "first offset negative":
        r0[0] = -1
    return rows, end


DOCTORED = ["end past the last block", "end negative", "end not an integer", "end true", "offset not an integer",
            "data not an integer", "size not an integer", "unknown kind", "name not a string", "link not a string",
            "digest not a string", "sparse chunk of three", "sparse negative", "sparse not integers",
            "offsets out of order", "data before its header", "data past the end", "negative size",
            "data running past the end", "sparse data running past the end", "first offset negative"]


@pytest.mark.parametrize("how", DOCTORED)
def test_a_damaged_or_edited_index_is_not_used_but_rebuilt(tmp_path, walks, how):
    tar = _tar(tmp_path / "val.tar", ["a.JPEG", "b.JPEG", "c.JPEG"])
    tar_index.tar_headers(tar, tmp_path / "index")
    original = json.loads(_kept(tmp_path / "index").read_text())
    doctored = json.loads(json.dumps(original))
    doctored["members"], doctored["end"] = _doctor(doctored["members"], doctored["end"], how, tar.stat().st_size)
    _kept(tmp_path / "index").write_text(json.dumps(doctored))
    headers, notes = tar_index.tar_headers(tar, tmp_path / "index")
    assert _got(headers) == _members(tar) and notes == []   # walked again, silently: no header was compared
    assert json.loads(_kept(tmp_path / "index").read_text()) == original
    assert len(walks) == 2


def test_a_sparse_index_entry_within_the_archive_is_used(tmp_path, walks):
    # the edge of the rules above: an entry an index may hold is taken as it is
    tar = _tar(tmp_path / "val.tar", ["a.JPEG", "b.JPEG"])
    tar_index.tar_headers(tar, tmp_path / "index")
    kept = json.loads(_kept(tmp_path / "index").read_text())
    end = kept["end"]
    kept["members"][1][6] = [[0, 0], [5, end - kept["members"][1][3]]]   # its data runs exactly to the end
    _kept(tmp_path / "index").write_text(json.dumps(kept))
    headers, notes = tar_index.tar_headers(tar, tmp_path / "index")
    assert headers[1].sparse == ((0, 0), (5, end - kept["members"][1][3])) and notes == [] and len(walks) == 1


@pytest.mark.parametrize("field, value", [("format", 1), ("path", "/elsewhere/val.tar"), ("size", 0),
                                          ("mtime_ns", 0), ("ino", 0), ("ctime_ns", 0)])
def test_an_index_whose_stamp_is_not_this_tars_is_rebuilt(tmp_path, walks, field, value):
    tar = _tar(tmp_path / "val.tar", ["a.JPEG", "b.JPEG"])
    tar_index.tar_headers(tar, tmp_path / "index")
    original = json.loads(_kept(tmp_path / "index").read_text())
    st = tar.stat()
    assert original["format"] == 2 and original["path"] == str(tar) and original["size"] == st.st_size
    assert (original["mtime_ns"], original["ino"], original["ctime_ns"]) == (st.st_mtime_ns, st.st_ino,
                                                                              st.st_ctime_ns)
    _kept(tmp_path / "index").write_text(json.dumps({**original, field: value}))
    assert tar_index.tar_headers(tar, tmp_path / "index") == (tar_index.tar_headers(tar, tmp_path / "index")[0], [])
    assert json.loads(_kept(tmp_path / "index").read_text()) == original and len(walks) == 2


@pytest.mark.parametrize("changed", [0, 1, 27, 29])
def test_an_index_whose_stamp_cannot_tell_is_caught_by_the_headers_it_lists(tmp_path, walks, changed):
    """A stamp that matches (a copied index, a filesystem without ctime) over a rewritten tar: the first, the
    last and the spread sample (i * 29 // 24 for i < 24 of 30 members: 1 and 27 are among them) are compared."""
    names = [f"{i:03d}.JPEG" for i in range(30)]
    tar = _tar(tmp_path / "val.tar", names)
    tar_index.tar_headers(tar, tmp_path / "index")
    renamed = names[:changed] + ["zzz.JPEG"] + names[changed + 1:]
    other = _tar(tmp_path / "other.tar", renamed)
    st = tar.stat()
    tar.write_bytes(other.read_bytes())
    kept = json.loads(_kept(tmp_path / "index").read_text())
    now = tar.stat()
    kept.update(size=now.st_size, mtime_ns=now.st_mtime_ns, ino=now.st_ino, ctime_ns=now.st_ctime_ns)
    _kept(tmp_path / "index").write_text(json.dumps(kept))
    assert now.st_size == st.st_size
    headers, notes = tar_index.tar_headers(tar, tmp_path / "index")
    assert _got(headers) == _members(tar) and [h.name for h in headers] == renamed
    assert notes == [f"val.tar: its kept index no longer matched the archive (member {names[changed]} at byte "
                     f"{changed * 1024:,}); its headers were read again"]


def test_an_end_of_archive_block_that_is_gone_is_noticed(tmp_path, walks):
    tar = _tar(tmp_path / "val.tar", ["a.JPEG", "b.JPEG"])
    raw = bytearray(tar.read_bytes())
    raw[-BLOCK:] = b"x" * BLOCK          # after the end-of-archive blocks: tar -x never reads it
    tar.write_bytes(bytes(raw))
    tar_index.tar_headers(tar, tmp_path / "index")
    kept = json.loads(_kept(tmp_path / "index").read_text())
    assert kept["end"] == 2 * 1024
    kept["end"] = len(raw) - BLOCK      # an index that says the archive ends at the last block
    _kept(tmp_path / "index").write_text(json.dumps(kept))
    headers, notes = tar_index.tar_headers(tar, tmp_path / "index")
    assert _got(headers) == _members(tar)
    assert notes == [f"val.tar: its kept index no longer matched the archive (no end-of-archive block at byte "
                     f"{len(raw) - BLOCK:,}); its headers were read again"]


def test_a_tar_that_is_not_there_and_an_index_that_cannot_be_kept_are_told_in_one_line(tmp_path):
    from senet_zoo.errors import SenetZooError

    with pytest.raises(SenetZooError) as e:
        tar_index.tar_headers(tmp_path / "missing.tar", tmp_path / "index")
    assert str(e.value) == f"{tmp_path / 'missing.tar'}: cannot read it (No such file or directory)"
    tar = _tar(tmp_path / "val.tar", ["a.JPEG"])
    (tmp_path / "blocked").write_text("")
    headers, notes = tar_index.tar_headers(tar, tmp_path / "blocked" / "tar-index")
    assert _got(headers) == _members(tar)
    assert notes == [f"tar index not kept ({tmp_path / 'blocked' / 'tar-index'}: cannot create the output folder: "
                     "Not a directory); the next run reads the tar's headers again"]
