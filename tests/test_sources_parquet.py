"""``validation/sources/parquet.py`` against files pyarrow writes here directly, in the Hub's ImageNet layout
(``image``: a struct of ``bytes`` and ``path``; ``label``: an integer), never through our own writer: the names,
the (file, row group, row) of each, the labels, the bytes read back in windows, and each refusal's words."""
from __future__ import annotations

import os
import pickle
import sys

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.images.preprocess import BadImage
from senet_zoo.validation.sources import parquet as pqsrc

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _payload(i: int, size: int = 1000) -> bytes:
    """Incompressible-looking bytes unique to row i."""
    return bytes((i * 7 + k * 13 + (k * k) % 251) % 256 for k in range(size))


def _write(path, rows, row_group_size=None, label_type=None, with_path=True, image_type=None):
    """rows: [(path, label, bytes)] written as the Hub's layout."""
    if with_path:
        image = pa.array([{"bytes": b, "path": p} for p, _, b in rows],
                         image_type or pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    else:
        image = pa.array([{"bytes": b} for _, _, b in rows], image_type or pa.struct([("bytes", pa.binary())]))
    table = pa.table({"image": image, "label": pa.array([lab for _, lab, _ in rows], label_type or pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_names_entries_and_labels_of_two_files_with_row_groups(tmp_path):
    a = _write(tmp_path / "validation-00000-of-00002.parquet", [
        ("ILSVRC2012_val_00000003.JPEG", 5, b"c"),
        ("some/dir/ILSVRC2012_val_00000001.JPEG", 999, b"a"),
        ("C:\\imagenet\\val\\ILSVRC2012_val_00000002.JPEG", 0, b"b"),
    ], row_group_size=2)
    b = _write(tmp_path / "validation-00001-of-00002.parquet", [
        ("ILSVRC2012_val_00000005.JPEG", 7, b"e"),
        ("ILSVRC2012_val_00000004.JPEG", 8, b"d"),
    ], row_group_size=1, label_type=pa.int16())
    names, entries, labels = pqsrc.scan_files([a, b])
    assert names == [f"ILSVRC2012_val_0000000{i}.JPEG" for i in range(1, 6)]
    assert entries == {"ILSVRC2012_val_00000003.JPEG": (0, 0, 0), "ILSVRC2012_val_00000001.JPEG": (0, 0, 1),
                       "ILSVRC2012_val_00000002.JPEG": (0, 1, 0), "ILSVRC2012_val_00000005.JPEG": (1, 0, 0),
                       "ILSVRC2012_val_00000004.JPEG": (1, 1, 0)}
    assert labels == {"ILSVRC2012_val_00000003.JPEG": 5, "ILSVRC2012_val_00000001.JPEG": 999,
                      "ILSVRC2012_val_00000002.JPEG": 0, "ILSVRC2012_val_00000005.JPEG": 7,
                      "ILSVRC2012_val_00000004.JPEG": 8}
    assert all(type(v) is int for v in labels.values())


def test_rows_without_a_path_are_named_by_file_stem_and_row_across_row_groups(tmp_path):
    f = _write(tmp_path / "val.parquet", [(None, i, bytes([i])) for i in range(5)], row_group_size=2,
               with_path=False)
    names, entries, labels = pqsrc.scan_files([f])
    assert names == [f"val/0000000{i}" for i in range(5)]
    assert entries["val/00000004"] == (0, 2, 0) and entries["val/00000003"] == (0, 1, 1)
    assert labels == {f"val/0000000{i}": i for i in range(5)}
    # a path struct field that is empty or null for a row: the same fallback name
    g = _write(tmp_path / "v2.parquet", [("", 1, b"x"), (None, 2, b"y"), ("ILSVRC2012_val_00000009.JPEG", 3, b"z")],
               row_group_size=2)
    assert pqsrc.scan_files([g])[0] == ["ILSVRC2012_val_00000009.JPEG", "v2/00000000", "v2/00000001"]


@pytest.mark.parametrize("label, words", [
    (1000, "row 1 (b.JPEG): label 1000 is not a class index 0..999"),
    (-1, "row 1 (b.JPEG): label -1 is not a class index 0..999 (the test split has no labels)"),
    (-2, "row 1 (b.JPEG): label -2 is not a class index 0..999"),
    (None, "row 1 (b.JPEG): label None is not a class index 0..999"),
])
def test_a_label_outside_the_classes_is_refused_naming_row_and_image(tmp_path, label, words):
    f = _write(tmp_path / "v.parquet", [("a.JPEG", 1, b"a"), ("b.JPEG", label, b"b")])
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([f])
    assert str(e.value) == f"{f}: {words}"


def test_the_same_image_twice_is_refused_naming_the_other_file(tmp_path):
    a = _write(tmp_path / "a.parquet", [("x.JPEG", 1, b"a"), ("y.JPEG", 1, b"a")])
    b = _write(tmp_path / "b.parquet", [("z.JPEG", 1, b"a"), ("dir/y.JPEG", 2, b"b")])
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([a, b])
    assert str(e.value) == f"{b}: row 1: the image y.JPEG is also in a.parquet"
    c = _write(tmp_path / "c.parquet", [("y.JPEG", 3, b"c")])    # first seen in file 1, row group 0, row 1
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([_write(tmp_path / "a0.parquet", [("w.JPEG", 1, b"w")]), a, c])
    assert str(e.value) == f"{c}: row 0: the image y.JPEG is also in a.parquet"
    with pytest.raises(SenetZooError, match=r"row 2: the image x.JPEG is also in a.parquet$"):
        pqsrc.scan_files([_write(tmp_path / "a.parquet", [("x.JPEG", 1, b""), ("w", 1, b""), ("x.JPEG", 1, b"")])])


def test_files_without_rows_are_refused(tmp_path):
    empty = _write(tmp_path / "e.parquet", [])
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([empty])
    assert str(e.value) == f"{empty}: holds no rows"
    for sub in ("sub1", "sub2"):
        (tmp_path / sub).mkdir()
    two = [_write(tmp_path / "sub1" / "e1.parquet", []), _write(tmp_path / "sub2" / "e2.parquet", [])]
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files(two)
    assert str(e.value) == f"{tmp_path / 'sub1'}: holds no rows"


def test_columns_missing_or_of_the_wrong_type_are_refused(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({c: [1] for c in "abcdefghij"}), path)
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([path])
    assert str(e.value) == (f"{path}: has no 'image' and no 'label' column (columns: a, b, c, d, e, f, g, h); "
                            "expected the Hub's image-classification layout: image {bytes, path}, label")
    pq.write_table(pa.table({"image": [{"bytes": b"x", "path": "p"}]}), path)
    with pytest.raises(SenetZooError, match=r"has no 'label' column \(columns: image\);"):
        pqsrc.scan_files([path])
    pq.write_table(pa.table({"label": [1]}), path)
    with pytest.raises(SenetZooError, match=r"has no 'image' column \(columns: label\);"):
        pqsrc.scan_files([path])
    pq.write_table(pa.table({"image": [b"raw"], "label": [1]}), path)
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([path])
    assert str(e.value) == f"{path}: column 'image' is binary, expected a struct with 'bytes' (and 'path')"
    pq.write_table(pa.table({"image": [{"data": b"x", "path": "p"}], "label": [1]}), path)
    with pytest.raises(SenetZooError, match="column 'image' is struct<data: binary, path: string>, expected"):
        pqsrc.scan_files([path])
    pq.write_table(pa.table({"image": [{"bytes": "text", "path": "p"}], "label": [1]}), path)
    with pytest.raises(SenetZooError, match="column 'image' is struct<bytes: string, path: string>, expected"):
        pqsrc.scan_files([path])
    pq.write_table(pa.table({"image": [{"bytes": b"x", "path": "p"}], "label": pa.array([1.0])}), path)
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([path])
    assert str(e.value) == f"{path}: column 'label' is double, expected an integer class index"
    pq.write_table(pa.table({"image": [{"bytes": b"x", "path": "p"}], "label": ["3"]}), path)
    with pytest.raises(SenetZooError, match="column 'label' is string, expected an integer class index"):
        pqsrc.scan_files([path])


def test_large_binary_image_bytes_and_a_struct_without_path_are_read(tmp_path):
    big = pa.struct([("bytes", pa.large_binary()), ("path", pa.string())])
    f = _write(tmp_path / "v.parquet", [("ILSVRC2012_val_00000001.JPEG", 3, b"abc")], image_type=big)
    names, entries, _ = pqsrc.scan_files([f])
    assert names == ["ILSVRC2012_val_00000001.JPEG"]
    assert pqsrc.ParquetReader([f], [entries[names[0]]], names).read(0) == b"abc"


def test_unreadable_files_are_one_line_naming_the_file(tmp_path, monkeypatch):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1" + b"\0" * 100 + b"not parquet")
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([junk])
    assert str(e.value) == (f"{junk}: not a readable parquet file (ArrowInvalid: Parquet magic bytes not found in "
                            "footer. Either the file is corrupted or this is not a parquet file.)")
    missing = tmp_path / "missing.parquet"
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([missing])
    text = str(e.value)
    assert text.startswith(f"{missing}: cannot read it as parquet (") and "\n" not in text
    assert text.endswith("No such file or directory)")

    def raising(error):
        def open_(*args, **kwargs):
            raise error
        return open_

    # an error of several lines gives its first; one without words, its type alone
    monkeypatch.setattr(pq, "ParquetFile", raising(ValueError("first line\nsecond line")))
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([junk])
    assert str(e.value) == f"{junk}: not a readable parquet file (ValueError: first line)"
    monkeypatch.setattr(pq, "ParquetFile", raising(ValueError()))
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([junk])
    assert str(e.value) == f"{junk}: not a readable parquet file (ValueError: )"
    monkeypatch.setattr(pq, "ParquetFile", raising(OSError("disk says no\nmore")))
    with pytest.raises(SenetZooError) as e:
        pqsrc.scan_files([junk])
    assert str(e.value) == f"{junk}: cannot read it as parquet (disk says no)"


def test_without_pyarrow_one_line_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SenetZooError) as e:
        pqsrc._pq()
    assert str(e.value) == "reading parquet files needs pyarrow (pip install pyarrow)"


# ---------------------------------------------------------------------------------------------- the reader

def _reader(tmp_path, n=10, size=1000, row_group_size=None, name="validation.parquet"):
    rows = [(f"ILSVRC2012_val_{i + 1:08d}.JPEG", i, _payload(i, size)) for i in range(n)]
    f = _write(tmp_path / name, rows, row_group_size=row_group_size)
    names, entries, _ = pqsrc.scan_files([f])
    return f, rows, pqsrc.ParquetReader([f], [entries[x] for x in names], names)


def test_the_reader_gives_each_rows_bytes_in_any_order(tmp_path):
    f, rows, r = _reader(tmp_path, n=9, row_group_size=4)
    assert len(r) == 9
    order = [8, 0, 5, 4, 3, 3, 1, 7, 2, 6, 0]
    assert [r.read(i) for i in order] == [rows[i][2] for i in order]
    assert r.where(5) == f"{f}:row group 1 row 1 (ILSVRC2012_val_00000006.JPEG)"
    assert r.members()[:2] == ["validation.parquet:0:0\tILSVRC2012_val_00000001.JPEG",
                               "validation.parquet:0:1\tILSVRC2012_val_00000002.JPEG"]
    st = os.stat(f)
    assert r.identity()[8] == ("validation.parquet:2:0", st.st_size, st.st_mtime_ns)


def test_windows_hold_the_rows_a_window_of_bytes_covers(tmp_path, monkeypatch):
    # 1000-byte images take 12103 bytes for 10 rows in the column chunk (lengths, page header, statistics):
    # a 4000-byte window holds 3 of them; no more than KEEP_WINDOWS (2) windows are kept
    monkeypatch.setattr(pqsrc, "WINDOW_BYTES", 4000)
    _, rows, r = _reader(tmp_path, n=10)
    assert r.read(0) == rows[0][2]
    assert [(k, len(v)) for k, v in r._windows.items()] == [((0, 0, 0), 3)]
    assert r.read(2) == rows[2][2] and list(r._windows) == [(0, 0, 0)]
    assert r.read(4) == rows[4][2]
    assert [(k, len(v)) for k, v in r._windows.items()] == [((0, 0, 0), 3), ((0, 0, 3), 3)]
    assert r.read(9) == rows[9][2]                      # skips the window of rows 6-8
    assert [(k, len(v)) for k, v in r._windows.items()] == [((0, 0, 3), 3), ((0, 0, 9), 1)]
    assert r.read(1) == rows[1][2]                      # before the stream: it restarts
    assert list(r._windows) == [(0, 0, 9), (0, 0, 0)]
    assert r.read(5) == rows[5][2] and list(r._windows) == [(0, 0, 0), (0, 0, 3)]


def test_a_window_never_spans_more_than_its_row_group(tmp_path, monkeypatch):
    monkeypatch.setattr(pqsrc, "WINDOW_BYTES", 1 << 30)
    _, rows, r = _reader(tmp_path, n=7, row_group_size=3)
    assert r.read(4) == rows[4][2]
    assert [(k, len(v)) for k, v in r._windows.items()] == [((0, 1, 0), 3)]
    monkeypatch.setattr(pqsrc, "WINDOW_BYTES", 10)      # smaller than one image: one row a window
    _, rows, r = _reader(tmp_path, n=4, name="v2.parquet")
    assert r.read(2) == rows[2][2] and [(k, len(v)) for k, v in r._windows.items()] == [((0, 0, 2), 1)]


def test_window_rows_falls_back_when_the_metadata_cannot_say(tmp_path):
    _, _, r = _reader(tmp_path, n=3)
    pf = r._file(0)

    class Broken:
        schema = pf.schema

        @property
        def metadata(self):
            raise OSError("damaged footer")

    assert r._window_rows(Broken(), 0) == pqsrc.FALLBACK_ROWS == 16
    assert r._window_rows(pf, 0) == 3                     # 8 MiB covers all three rows


def test_a_row_without_bytes_or_beyond_its_group_is_a_bad_image(tmp_path):
    f = _write(tmp_path / "v.parquet", [("a.JPEG", 1, b"ok"), ("b.JPEG", 2, b""), ("c.JPEG", 3, None)])
    names, entries, _ = pqsrc.scan_files([f])
    r = pqsrc.ParquetReader([f], [entries[n] for n in names] + [(0, 0, 7)], names + ["ghost.JPEG"])
    assert r.read(0) == b"ok"
    with pytest.raises(BadImage) as e:
        r.read(1)
    assert str(e.value) == f"{f}:row group 0 row 1 (b.JPEG): no image bytes"
    with pytest.raises(BadImage, match=r"row 2 \(c.JPEG\): no image bytes$"):
        r.read(2)
    with pytest.raises(BadImage) as e:
        r.read(3)
    assert str(e.value) == f"{f}:row group 0 row 7 (ghost.JPEG): cannot read (IndexError: row group 0 has 3 rows)"
    assert r._stream is None
    assert r.read(0) == b"ok"


def test_a_file_that_went_away_is_each_images_failure_and_its_identity_says_so(tmp_path):
    f, rows, r = _reader(tmp_path, n=2)
    gone = tmp_path / "gone.parquet"
    r2 = pqsrc.ParquetReader([gone], [(0, 0, 0)], ["ILSVRC2012_val_00000001.JPEG"])
    assert r2.identity() == [("gone.parquet:0:0", -1, -1)]
    with pytest.raises(BadImage, match=r"gone.parquet:row group 0 row 0 \(ILSVRC2012_val_00000001.JPEG\): "
                                       r"cannot read \(FileNotFoundError: "):
        r2.read(0)
    assert r.read(1) == rows[1][2]


def test_the_reader_pickles_without_its_handles_and_a_fork_opens_its_own(tmp_path):
    _, rows, r = _reader(tmp_path, n=5)
    assert r.read(3) == rows[3][2]
    assert r._open and r._windows and r._stream is not None
    state = r.__getstate__()
    assert (state["_pid"], state["_open"], state["_windows"], state["_stream"]) == (None, {}, {}, None)
    assert r._open and r._windows                         # the reader itself keeps them
    copy = pickle.loads(pickle.dumps(r))
    assert copy.names == r.names and copy.entries == r.entries and copy._stat == r._stat
    assert [copy.read(i) for i in range(5)] == [x[2] for x in rows]
    # as in a forked worker: another pid drops the parent's handles and windows
    r._pid = -1
    held = r._open[0]
    r._windows = {(0, 0, 0): [b"stale"] * 5}
    assert r.read(0) == rows[0][2] and r._pid == os.getpid() and r._open[0] is not held


def test_the_reader_opens_each_file_once_streaming_through_a_small_buffer(tmp_path, monkeypatch):
    _, rows, r = _reader(tmp_path, n=3)
    opened = []
    real = pq.ParquetFile

    def spy(*args, **kwargs):
        opened.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", spy)
    assert [r.read(i) for i in (0, 1, 2, 0)] == [rows[i][2] for i in (0, 1, 2, 0)]
    assert len(opened) == 1
    monkeypatch.setattr(pqsrc, "WINDOW_BYTES", 10)         # one row a window: going back restarts the stream
    r = pqsrc.ParquetReader(r.files, r.entries, r.names)
    opened.clear()
    assert [r.read(i) for i in (2, 0, 2, 1, 0)] == [rows[i][2] for i in (2, 0, 2, 1, 0)]
    assert len(opened) == 1                                 # on the file already open
    args, kwargs = opened[0]
    assert args == (r.files[0],)
    assert kwargs == {"memory_map": False, "buffer_size": 1 << 20, "pre_buffer": False}


def test_a_path_field_first_in_the_struct_still_names_the_rows(tmp_path):
    image = pa.struct([("path", pa.string()), ("bytes", pa.binary())])
    f = _write(tmp_path / "v.parquet", [("ILSVRC2012_val_00000002.JPEG", 4, b"b"),
                                        ("ILSVRC2012_val_00000001.JPEG", 3, b"a")], image_type=image)
    names, entries, labels = pqsrc.scan_files([f])
    assert names == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    assert labels == {"ILSVRC2012_val_00000001.JPEG": 3, "ILSVRC2012_val_00000002.JPEG": 4}
    assert pqsrc.ParquetReader([f], [entries[n] for n in names], names).read(0) == b"a"


@pytest.mark.parametrize("with_path", [True, False])
def test_listing_reads_no_image_bytes_so_damaged_ones_fail_only_their_images(tmp_path, with_path):
    """The set is built from ``image.path`` and ``label`` alone: image bytes that cannot be decoded (here the
    length of the first value of the bytes column, overwritten) are each image's failure when it is read."""
    rows = [(f"ILSVRC2012_val_{i:08d}.JPEG", i, b"IMAGE-%d-" % i + b"x" * 200) for i in (1, 2)]
    f = tmp_path / "v.parquet"
    table = pa.table({"image": pa.array([{"bytes": b, "path": p} for p, _, b in rows] if with_path
                                        else [{"bytes": b} for _, _, b in rows]),
                      "label": pa.array([lab for _, lab, _ in rows], pa.int64())})
    pq.write_table(table, f, compression="none", use_dictionary=False, write_statistics=False)
    raw = bytearray(f.read_bytes())
    at = raw.find(b"IMAGE-1-")
    assert at > 4 and raw.find(b"IMAGE-1-", at + 1) < 0
    raw[at - 4:at] = (0x7FFFFFF0).to_bytes(4, "little")   # PLAIN byte array: a 4-byte length, then the value
    f.write_bytes(bytes(raw))
    names, entries, labels = pqsrc.scan_files([f])
    assert list(labels.values()) == [1, 2] and len(names) == 2
    reader = pqsrc.ParquetReader([f], [entries[n] for n in names], names)
    with pytest.raises(BadImage, match=r"cannot read \("):
        reader.read(0)


class _Counting:
    """A ParquetFile that counts the streams started and the batches they decode."""

    def __init__(self, pf, log):
        self._pf, self._log = pf, log

    def __getattr__(self, name):
        return getattr(self._pf, name)

    def iter_batches(self, *args, **kwargs):
        self._log.append("stream")
        for batch in self._pf.iter_batches(*args, **kwargs):
            self._log.append(batch.num_rows)
            yield batch


def test_consecutive_rows_cost_one_read_a_window_and_kept_windows_none(tmp_path, monkeypatch):
    # 1000-byte images, about 1210 bytes a row in the column chunk: 4000 bytes is a window of 3 rows
    monkeypatch.setattr(pqsrc, "WINDOW_BYTES", 4000)
    _, rows, r = _reader(tmp_path, n=10)
    log = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda *a, **k: _Counting(real(*a, **k), log))

    def reads(*order):
        del log[:]
        assert [r.read(i) for i in order] == [rows[i][2] for i in order]
        return list(log)

    assert reads(0, 1, 2) == ["stream", 3]                 # one window, decoded once
    assert reads(3) == [3]                                 # the next window, from the same stream
    assert reads(4, 5, 3, 0, 2, 4) == []                   # both kept windows, nothing read
    assert reads(6, 7, 8, 9) == [3, 1]
    assert reads(9, 8, 6, 7) == []
    assert reads(5) == ["stream", 3, 3]                    # before the stream's place: it restarts


def test_the_image_column_is_found_by_name_wherever_it_stands(tmp_path):
    f = tmp_path / "v.parquet"
    pq.write_table(pa.table({"label": pa.array([2, 1], pa.int64()),
                             "image": [{"bytes": b"two", "path": "ILSVRC2012_val_00000002.JPEG"},
                                       {"bytes": b"one", "path": "ILSVRC2012_val_00000001.JPEG"}]}), f)
    names, entries, labels = pqsrc.scan_files([f])
    r = pqsrc.ParquetReader([f], [entries[n] for n in names], names)
    assert [r.read(0), r.read(1)] == [b"one", b"two"] and list(labels.values()) == [2, 1]
