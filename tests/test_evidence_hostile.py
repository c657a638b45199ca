"""Hostile inputs of issue 7, one test per case class, at the reader each class attacks: refused in one line
naming the file, in bounded time, never unpickled. The same classes through the real CLI (exit 2, one line,
no output left, peak memory): tests/test_evidence_hostile_cli.py (slow)."""
import json
import pickle
import time

import numpy as np
import pytest

from senet_zoo.converters import caffe_io, caffe_pb2
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import labels as label_files
from senet_zoo.validation.progress import Progress

from support.evidence import (HOSTILE_LABELS, VAL1, empty_layer_records,
                              interleaved_nonpacked_caffemodel, sparse_hdf5, v1_caffemodel_with_name, wire_field,
                              wire_varint)


def refused(path, call, *fragments) -> str:
    with pytest.raises(SenetZooError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ------------------------------------------------------------------------------------------------ caffemodels

def test_interleaved_nonpacked_records_are_read_in_linear_time(tmp_path):
    path = interleaved_nonpacked_caffemodel(tmp_path / "interleaved.caffemodel")
    assert 3_400_000 < path.stat().st_size < 3_600_000
    start = time.perf_counter()
    blob = caffe_io.read_weights(path).layer("conv").blobs[0]
    assert time.perf_counter() - start < 60  # quadratic took over 5 minutes; linear is ~1 s
    assert blob.shape == (350_000,) and (blob == 1.0).all()


def test_interleaved_runs_of_every_length_equal_protobufs_parse(tmp_path):
    """Runs of 1..300 non-packed data records between diff records and packed chunks, float and double."""
    rng = np.random.default_rng(5)
    for tag, dtype, packed_field in ((0x2D, "<f4", 5), (0x41, "<f8", 8)):
        parts = []
        for _ in range(400):
            values = rng.standard_normal(int(rng.choice([1, 1, 2, 63, 64, 65, 300]))).astype(dtype)
            parts.append(b"".join(bytes([tag]) + v.tobytes() for v in values))
            parts.append(b"\x35" + np.float32(7).tobytes() if rng.random() < 0.8 else
                         wire_field(packed_field, rng.standard_normal(3).astype(dtype).tobytes()))
        body = b"".join(parts)
        expected = caffe_pb2.BlobProto.FromString(body)
        values = np.array(expected.double_data if dtype == "<f8" else expected.data, dtype)
        blob = wire_field(7, wire_varint(1 << 3) + wire_varint(values.size)) + body
        path = tmp_path / f"runs{dtype[-1]}.caffemodel"
        path.write_bytes(wire_field(1, b"n") + wire_field(100, wire_field(1, b"conv") + wire_field(7, blob)))
        got = caffe_io.read_weights(path).layer("conv").blobs[0]
        np.testing.assert_array_equal(got, values.astype(np.float32))


def test_float_and_double_records_interleaved_read_as_caffe_does(tmp_path):
    """Both kinds in one blob, runs of each between the other's: Caffe takes double_data when there is any."""
    rng = np.random.default_rng(6)
    parts = []
    for _ in range(300):
        n = int(rng.choice([1, 2, 63, 64, 70]))
        if rng.random() < 0.5:
            parts += [b"\x2d" + v.tobytes() for v in rng.standard_normal(n).astype("<f4")]
        else:
            parts += [b"\x41" + v.tobytes() for v in rng.standard_normal(n).astype("<f8")]
    body = b"".join(parts)
    expected = np.array(caffe_pb2.BlobProto.FromString(body).double_data, "<f8").astype(np.float32)
    blob = wire_field(7, wire_varint(1 << 3) + wire_varint(expected.size)) + body
    path = tmp_path / "mixed.caffemodel"
    path.write_bytes(wire_field(1, b"n") + wire_field(100, wire_field(1, b"conv") + wire_field(7, blob)))
    np.testing.assert_array_equal(caffe_io.read_weights(path).layer("conv").blobs[0], expected)


_PEAK_CHILD = """
import sys
from senet_zoo.converters import caffe_io

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))

caffe_io.read_weights(sys.argv[1])  # a small file first: whatever reading imports or caches lazily
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # peak RSS := current RSS (ru_maxrss cannot be reset and after exec may hold the parent's)
before = kib("VmRSS:")
caffe_io.read_weights(sys.argv[2])
print((kib("VmHWM:") - before) * 1024)
"""


@pytest.mark.slow
def test_interleaved_records_cost_less_memory_than_the_file(tmp_path):
    """Linux only (/proc). Keeping each record run's place cost 17 bytes a run (over twice this file); the second walk keeps
    only the values (4 of every 10 bytes) and returns walked pages to the kernel."""
    import subprocess
    import sys

    small = interleaved_nonpacked_caffemodel(tmp_path / "small.caffemodel", pairs=1000)
    path = interleaved_nonpacked_caffemodel(tmp_path / "interleaved.caffemodel", pairs=2_000_000)
    r = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(small), str(path)], capture_output=True,
                       text=True, timeout=300, check=True)
    grown = int(r.stdout.strip())
    assert grown < 1.2 * path.stat().st_size, (grown, path.stat().st_size)


def test_millions_of_empty_layer_records_are_refused_early(tmp_path):
    path = empty_layer_records(tmp_path / "empty.caffemodel")  # 9 MB, 3 M layers
    start = time.perf_counter()
    refused(path, lambda: caffe_io.read_weights(path), f"more than {caffe_io.MAX_LAYERS} layer records")
    assert time.perf_counter() - start < 30  # was 36 s and 5.9 GB


def test_sparse_hdf5_dataset_is_refused_before_allocating(tmp_path):
    path = sparse_hdf5(tmp_path / "sparse.caffemodel.h5")
    assert path.stat().st_size < 16_000
    refused(path, lambda: caffe_io.read_weights(path), "layer 'conv1' blob 0", "declares 750000000 values",
            "3000000000 bytes")


def test_zero_d_hdf5_blob_is_read_as_caffe_writes_it(tmp_path):
    """A 0-d dataset is a blob of shape (): read as such (no traceback), refused later by the blob rules."""
    import h5py

    path = tmp_path / "scalar.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data/conv1/bn/2", data=np.float32(3.0))
        f.create_dataset("data/conv1/bn/0", data=np.zeros(4, np.float32))
        f.create_dataset("data/conv1/bn/1", data=np.ones(4, np.float32))
    layer = caffe_io.read_weights(path).layer("conv1/bn")
    assert [b.shape for b in layer.blobs] == [(4,), (4,), ()] and layer.blobs[2] == 3.0


@pytest.mark.parametrize("name", [b"conv\xff1", b"\xc3\x28", b"\xed\xa0\x80"])  # bad byte, bad pair, surrogate
def test_non_utf8_names_in_v1_layers_are_refused(tmp_path, name):
    path = v1_caffemodel_with_name(tmp_path / "v1.caffemodel", name)
    refused(path, lambda: caffe_io.read_weights(path), "layer 0", "field 'name' is not UTF-8 text")


def test_the_v1_builder_reads_back_with_a_utf8_name(tmp_path):
    path = v1_caffemodel_with_name(tmp_path / "v1.caffemodel", b"conv1")
    layer = caffe_io.read_weights(path).layer("conv1")
    assert layer.type == "Convolution" and layer.blobs[0].tolist() == [1.0]


# ------------------------------------------------------------------------------------------------ label files

@pytest.mark.parametrize("filename", sorted(HOSTILE_LABELS))
def test_hostile_label_files_are_refused_in_one_line(tmp_path, filename):
    path = tmp_path / filename
    path.write_text(HOSTILE_LABELS[filename], encoding="utf-8")
    fmt = "json" if filename.endswith(".json") else "caffe"
    start = time.perf_counter()
    refused(path, lambda: label_files.read_label_file(path, fmt),
            "not a usable JSON label file" if fmt == "json" else "is not a class index 0..999")
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("fmt, text", [("caffe", f"{VAL1} 65\n"), ("json", '{"%s": 65}' % VAL1),
                                       ("wnid", f"{VAL1} n01440764\n")])
def test_a_bom_is_tolerated(tmp_path, fmt, text):
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text(text, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert label_files.read_label_file(bom, fmt)[0] == label_files.read_label_file(plain, fmt)[0]
    assert list(label_files.read_label_file(bom, fmt)[0]) == [VAL1]


def test_bounded_reads_see_one_byte_past_the_limit(tmp_path, monkeypatch):
    """A file one byte over a limit is refused, not read up to the limit and accepted cut short: cut by one
    byte, this label file would label image 1 class 6 instead of 65, and this JSON would still parse."""
    from senet_zoo import jsonio
    from senet_zoo.files import read_at_most

    path = tmp_path / "labels.txt"
    path.write_bytes(b"ILSVRC2012_val_00000001.JPEG 65")         # 31 bytes, no newline
    assert read_at_most(path, 30) == path.read_bytes()             # limit + 1 bytes: over, and visibly so
    assert read_at_most(path, 31) == path.read_bytes()
    assert read_at_most(path, 100) == path.read_bytes()
    monkeypatch.setattr(label_files, "MAX_LABEL_FILE_BYTES", 30)
    refused(path, lambda: label_files.read_label_file(path, "caffe"), "larger than")
    monkeypatch.setattr(label_files, "MAX_LABEL_FILE_BYTES", 31)
    assert label_files.read_label_file(path, "caffe")[0] == {VAL1: 65}

    doc = tmp_path / "doc.json"
    doc.write_bytes(b'{"a": 1} ')                                   # 9 bytes; its first 8 are JSON too
    with pytest.raises(jsonio.JSONLimitError, match="9 bytes of JSON, more than the 8 allowed"):
        jsonio.load_path(doc, max_bytes=8)
    assert jsonio.load_path(doc, max_bytes=9) == {"a": 1}


# ------------------------------------------------------------------------------------------- progress files

N_IMAGES, BATCH = 7, 3
KEY = {"model": "se_resnet50", "batch_size": BATCH}


def progress_state(**changes):
    """What Progress.save writes after 2 of 3 batches, with ``changes``."""
    state = dict(key=np.array(json.dumps(KEY, sort_keys=True)), done_batches=np.int64(2),
                 rows=np.int64(6), top5=np.arange(30, dtype=np.int16).reshape(6, 5),
                 status=np.ones(6, np.int8), elapsed=np.float64(1.5), logits_rows=np.int64(0))
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def write_progress(path, **changes):
    np.savez(path, **progress_state(**changes))
    return path


def test_a_progress_file_as_save_writes_it_loads(tmp_path):
    progress = Progress(tmp_path / "r.progress.npz", KEY)
    progress.save(2, 6, np.arange(30).reshape(6, 5), np.ones(6, np.int8), 1.5, 0)
    state = progress.load(N_IMAGES, BATCH)
    assert int(state["rows"]) == 6 and state["top5"].shape == (6, 5)


class _Touch:
    """Unpickling this creates a file: proof, if the file exists, that something unpickled user data."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("case, expect", [
    ("not a zip", "unreadable progress file"),
    ("pickled member", "unreadable progress file"),
    ("missing member", "holds "),
    ("extra member", "holds "),
    ("key is deep JSON", "nested more than"),
    ("key is a 5000-digit number", "a number of 5000 characters"),
    ("key is a JSON list", "not a JSON object"),
    ("key is not a string", "'key' is"),
    ("rows beyond the images", "do not fit 7 images"),
    ("negative batches", "do not fit 7 images"),
    ("top5 of the wrong shape", "top-5 rows"),
    ("top5 out of range", "top-5 classes out of range"),
    ("status of padding", "status values"),
    ("float counters", "'done_batches' is"),
    ("infinite elapsed time", "elapsed time inf"),
    ("more logits than rows", "rows of logits"),
])
def test_a_forged_progress_file_is_one_line_and_never_unpickled(tmp_path, case, expect):
    path = tmp_path / "r.progress.npz"
    marker = tmp_path / "unpickled"
    if case == "not a zip":
        path.write_bytes(pickle.dumps(_Touch(marker)))
    elif case == "pickled member":
        np.savez(path, **progress_state(top5=np.array([_Touch(marker)], dtype=object)))
    else:
        changes = {
            "missing member": dict(elapsed=None),
            "extra member": dict(more=np.zeros(3)),
            "key is deep JSON": dict(key=np.array("[" * 20_000 + "]" * 20_000)),
            "key is a 5000-digit number": dict(key=np.array("9" * 5000)),
            "key is a JSON list": dict(key=np.array("[1, 2]")),
            "key is not a string": dict(key=np.zeros(3)),
            "rows beyond the images": dict(done_batches=np.int64(10 ** 9), rows=np.int64(3 * 10 ** 9)),
            "negative batches": dict(done_batches=np.int64(-1)),
            "top5 of the wrong shape": dict(top5=np.zeros((6, 4), np.int16)),
            "top5 out of range": dict(top5=np.full((6, 5), 1000, np.int16)),
            "status of padding": dict(status=np.full(6, -1, np.int8)),
            "float counters": dict(done_batches=np.float64(2)),
            "infinite elapsed time": dict(elapsed=np.float64("inf")),
            "more logits than rows": dict(logits_rows=np.int64(7)),
        }[case]
        write_progress(path, **changes)
    before = path.read_bytes()
    message = refused(path, lambda: Progress(path, KEY).load(N_IMAGES, BATCH), expect)
    assert "delete it" in message
    assert not marker.exists()
    assert path.read_bytes() == before  # the user's file is left alone: they decide


def test_a_progress_member_that_inflates_beyond_what_a_run_writes_is_refused_before_inflating(tmp_path):
    """A deflated all-zero member of 256 MiB is ~250 KB on disk; refusing it by its declared size keeps the
    cost at what the file holds."""
    import tracemalloc
    import zipfile

    path = write_progress(tmp_path / "r.progress.npz", top5=None)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z, z.open("top5.npy", "w", force_zip64=True) as f:
        chunk = bytes(1 << 24)
        for _ in range(16):
            f.write(chunk)
    tracemalloc.start()
    try:
        refused(path, lambda: Progress(path, KEY).load(N_IMAGES, BATCH), "declares 268,435,456 bytes")
        assert tracemalloc.get_traced_memory()[1] < 64 << 20
    finally:
        tracemalloc.stop()


def test_a_progress_file_of_other_settings_names_them(tmp_path):
    path = write_progress(tmp_path / "r.progress.npz")
    refused(path, lambda: Progress(path, {**KEY, "model": "senet154"}).load(N_IMAGES, BATCH),
            "other settings (model differ)")


# ------------------------------------------------------------------------------------- records and headers

def deep_safetensors(path, header: bytes):
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


@pytest.mark.parametrize("header", [b"[" * 20_000 + b"]" * 20_000,
                                    b'{"__metadata__": {"a": "b"}, "x": {"data_offsets": [0, ' + b"9" * 5000 + b"]}}",
                                    b'{"__metadata__": ' + b"[" * 100 + b"]" * 100 + b"}"])
def test_safetensors_headers_with_deep_or_huge_json_are_refused(tmp_path, header):
    from senet_zoo.weights.folder import read_safetensors_header

    path = deep_safetensors(tmp_path / "model.safetensors", header)
    refused(path, lambda: read_safetensors_header(path), "not a safetensors file")


@pytest.mark.parametrize("text", ["[" * 20_000 + "]" * 20_000, '{"schema": ' + "9" * 5000 + "}",
                                  '{"schema": "x", "results": ' + "{" * 70 + "}" * 70 + "}"])
def test_records_with_deep_or_huge_json_are_refused(tmp_path, text):
    from senet_zoo.hub.records import find_records, load_record

    path = tmp_path / "runs" / "r.json"
    path.parent.mkdir()
    path.write_text(text)
    refused(path, lambda: load_record(path), "not a readable validation record")
    assert find_records([path.parent]) == []  # in a searched folder: skipped like any other JSON file


# ---------------------------------------------------------------------------------------------- decode cache

def _one_image_cache(tmp_path):
    """A decode cache built for one real JPEG, and how to open it again."""
    from senet_zoo.validation.cache import DecodeCache
    from senet_zoo.images.preprocess import Preprocessing
    from senet_zoo.validation.sources.folder import FolderReader

    import cv2

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / VAL1), np.full((40, 50, 3), 90, np.uint8))
    reader, prep = FolderReader(images, [VAL1]), Preprocessing("caffe", 36, 32)

    def reopen():
        return DecodeCache.open(tmp_path / "cache", reader, prep, log=lambda s: None)

    return reopen(), reopen


@pytest.mark.parametrize("blob", ["images.npy", "status.npy", "key.json"])
def test_a_cache_blob_that_is_a_directory_rebuilds_the_cache(tmp_path, blob):
    cache, reopen = _one_image_cache(tmp_path)
    assert reopen().reused  # untouched: reused
    target = cache.folder / blob
    target.unlink()
    target.mkdir()
    (target / "inside").write_text("x")
    again = reopen()
    assert not again.reused and (again.folder / blob).is_file()
    assert again.key == cache.key


@pytest.mark.parametrize("text", ["[" * 20_000 + "]" * 20_000, "[1, 2]", '{"num_images": ' + "9" * 5000 + "}"])
def test_a_forged_cache_key_rebuilds_the_cache(tmp_path, text):
    cache, reopen = _one_image_cache(tmp_path)
    (cache.folder / "key.json").write_text(text)
    again = reopen()
    assert not again.reused and again.key == cache.key
