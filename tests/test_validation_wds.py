"""WebDataset shards (``sources/wds.py``) against webdataset's documented rules and hand-built shards: brace
patterns as ``braceexpand`` expands them, keys and fields as ``base_plus_ext``/``group_by_keys`` make them
(lower-cased fields), the bounds of a ``.cls`` and a ``.json`` member, and the name a sample's image gets.
Named after the module, so that under mutmut (``tests/conftest.py``) these quick tests run first."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources import wds
from senet_zoo.validation.sources.factory import open_source


def _shard(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, payload in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(payload), 1_500_000_000
            tf.addfile(ti, io.BytesIO(payload))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, target, 1_500_000_000
            tf.addfile(ti)
    return path


def _refusal(path, index_dir) -> str:
    with pytest.raises(SenetZooError) as e:
        open_source(path, index_dir)
    return str(e.value)


def _read(path, index_dir) -> tuple[dict[str, bytes], dict[str, int]]:
    src = open_source(path, index_dir)
    reader = src.make_reader(src.names)
    return {n: reader.read(i) for i, n in enumerate(src.names)}, src.labels


# --- brace patterns: braceexpand's numeric ranges -------------------------------------------------------------


def test_a_range_of_one_number_and_the_exact_bound_are_allowed():
    assert wds.shard_count("s-{3..3}.tar") == 1 and list(wds.expand_braces("s-{3..3}.tar")) == ["s-3.tar"]
    assert wds.shard_count("s-{0..99999}.tar") == 100_000      # MAX_SHARDS itself is allowed
    assert wds.shard_count("s-{1..100}-{1..1000}.tar") == 100_000
    assert list(wds.expand_braces("plain.tar")) == ["plain.tar"]


BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None, reason="bash is the reference for brace expansion")
@pytest.mark.parametrize("pattern", ["s-{9..11}", "s-{0..10}", "s-{00..03}", "s-{1..010}", "s-{01..100}",
                                     "s-{9..011}", "s-{08..10}-{0..1}", "s-{007..9}"])
def test_brace_ranges_expand_and_pad_as_bash_does(pattern):
    # webdataset expands shard patterns with braceexpand, which follows bash: padded to the longer bound when
    # either bound has a leading zero ("0" alone is no leading zero)
    echo = subprocess.run([BASH, "-c", f"echo {pattern}"], capture_output=True, text=True, check=True)
    expected = echo.stdout.split()
    assert list(wds.expand_braces(pattern)) == expected


@pytest.mark.parametrize("pattern, shown", [
    ("s-{0..100000}.tar", "100,001"),
    ("s-{1..100000000000000}.tar", "100,000,000,000,000"),        # 10^14: still written out
    ("s-{1..1000000000000000}.tar", "about 10^15"),               # 10^15 and beyond: an order of magnitude
    ("s-{1..10000000000000000}.tar", "about 10^16"),
])
def test_too_many_shards_are_refused_saying_how_many(pattern, shown):
    with pytest.raises(SenetZooError) as e:
        wds.shard_count(pattern)
    assert str(e.value) == (f"{pattern}: the brace pattern names more than 100,000 shards ({shown}); a validation "
                            "set needs far fewer")


def test_an_empty_range_is_refused_naming_it():
    with pytest.raises(SenetZooError) as e:
        wds.shard_count("s-{0..1}-{7..6}.tar")
    assert str(e.value) == "s-{0..1}-{7..6}.tar: empty range {7..6}"


# --- keys and fields -------------------------------------------------------------------------------------------


def test_upper_case_extensions_are_webdataset_fields_all_the_same(tmp_path):
    # group_by_keys lower-cases the field: KEY.JPG and KEY.CLS are the image and the label
    shard = _shard(tmp_path / "s.tar", {"a.JPG": b"A", "a.CLS": b"4", "b.Jpeg": b"B", "b.Cls": b"5"})
    got, labels = _read(shard, tmp_path / "index")
    assert got == {"a.JPG": b"A", "b.Jpeg": b"B"} and labels == {"a.JPG": 4, "b.Jpeg": 5}


def test_a_sample_without_image_or_label_is_not_an_image(tmp_path):
    shard = _shard(tmp_path / "s.tar", {"a.jpg": b"A", "a.cls": b"1", "a.txt": b"t", "a.v2.txt": b"u",
                                        "b.txt": b"notes", "c.json": b"{}"},
                   links={"d.txt": "b.txt", "nodot": "a.jpg"})
    got, labels = _read(shard, tmp_path / "index")
    assert got == {"a.jpg": b"A"} and labels == {"a.jpg": 1}


def test_members_webdataset_skips_do_not_end_the_shard(tmp_path):
    # in archive order: a link, a name without a dot, a __...__ member and a sample of no image, then samples
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tf:
        for name, payload, link in [("notes.txt", None, "x"), ("README", b"r", ""), ("__meta__/x.cls", b"1", ""),
                                    ("0.txt", b"t", ""), ("a.jpg", b"A", ""), ("a.cls", b"1", ""),
                                    ("b.v2.x.jpg", b"B", ""), ("b.cls", b"2", "")]:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_500_000_000
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link
            else:
                ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)
    got, labels = _read(path, tmp_path / "index")
    # "b.v2.x.jpg": key "b", field "v2.x.jpg", an image by its last extension
    assert got == {"a.jpg": b"A", "b.v2.x.jpg": b"B"} and labels == {"a.jpg": 1, "b.v2.x.jpg": 2}


@pytest.mark.parametrize("members, links, message", [
    ({"a.jpg": b"A"}, {"a.CLS": "b.cls"},
     "member a.CLS is a symbolic link to b.cls: WebDataset readers skip it, so its sample would lose it"),
    ({"a.cls": b"1"}, {"a.PNG": "b.png"},
     "member a.PNG is a symbolic link to b.png: WebDataset readers skip it, so its sample would lose it"),
    ({"a.cls": b"1"}, None, "member a.cls: a label without an image (a.jpg)"),
    ({"a.jpg": b"A", "a.png": b"B", "a.webp": b"C", "a.cls": b"1"}, None,
     "member a.png: the sample a has 3 image members (a.jpg, a.png, a.webp)"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.json": b"{}", "a.x.json": b"{}"}, None,
     "member a.x.json: the sample a has 2 json members (a.json, a.x.json)"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.v2.cls": b"2"}, None,
     "member a.v2.cls: the sample a has 2 cls members (a.cls, a.v2.cls)"),
    ({"a.jpg": b"A", "b.jpg": b"B", "b.cls": b"1"}, None, "member a.jpg: no a.cls label beside it"),
    ({"a.jpg": b"A", "a.cls": b"1", "b.jpg": b"B", "b.cls": b"2", "a.json": b"{}"}, None,
     "member a.json: the key a is used twice (also by a.jpg): WebDataset keys name one sample each"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.JPG": b"B"}, None,
     "member a.JPG: the sample a already has a jpg member (a.jpg)"),
])
def test_refusals_name_the_member_and_the_rule(tmp_path, members, links, message):
    shard = _shard(tmp_path / "s.tar", members, links)
    assert _refusal(shard, tmp_path / "index") == f"{shard}: {message}"


def test_the_same_image_in_two_shards_is_refused_naming_both(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    _shard(folder / "s0.tar", {"k.jpg": b"A", "k.cls": b"1"})
    second = _shard(folder / "s1.tar", {"k.jpg": b"B", "k.cls": b"2"})
    assert _refusal(folder, tmp_path / "index") == f"{second}: member k.jpg: the image k.jpg is also in s0.tar"


def test_shards_with_no_sample_are_refused_naming_the_shard_or_the_folder(tmp_path):
    # a .cls member makes a tar a shard, but webdataset skips __...__ members: no sample is left
    one = _shard(tmp_path / "one.tar", {"__meta__/x.cls": b"1"})
    assert _refusal(one, tmp_path / "index") == f"{one}: holds no WebDataset samples (KEY.jpg with KEY.cls)"
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in range(2):
        _shard(folder / f"s{i}.tar", {f"__meta__/x{i}.cls": b"1"})
    assert _refusal(folder, tmp_path / "index") == f"{folder}: holds no WebDataset samples (KEY.jpg with KEY.cls)"


# --- the .cls member: ASCII digits 0..999, at most 64 bytes ------------------------------------------------------


def test_class_indices_at_both_ends_are_read(tmp_path):
    shard = _shard(tmp_path / "s.tar", {"a.jpg": b"A", "a.cls": b"0", "b.jpg": b"B", "b.cls": b"999",
                                        "c.jpg": b"C", "c.cls": b"\t12\r\n"})
    assert _read(shard, tmp_path / "index")[1] == {"a.jpg": 0, "b.jpg": 999, "c.jpg": 12}


def test_a_cls_member_of_64_bytes_is_read_and_one_of_65_refused(tmp_path):
    ok = _shard(tmp_path / "ok.tar", {"a.jpg": b"A", "a.cls": b"7" + b" " * 63})
    assert _read(ok, tmp_path / "index")[1] == {"a.jpg": 7}
    long = _shard(tmp_path / "long.tar", {"a.jpg": b"A", "a.cls": b"7" + b" " * 64})
    assert _refusal(long, tmp_path / "index") == f"{long}: member a.cls: 65 bytes, more than the 64 of a class index"


@pytest.mark.parametrize("payload, shown", [
    (b"abcdefghijklmnopqrstuvwxyz", "'abcdefghijklmnopqrst'"),       # the first 20 characters
    (b"X7X", "'X7X'"),
    (b"1000", "'1000'"),
    (b"-1", "'-1'"),
    (b"\xff1", "'\ufffd1'"),                                       # not UTF-8: shown replaced
    (b"7\x0c", "'7\\x0c'"),     # a form feed: only space, tab, CR and LF may surround the digits (refused, not guessed)
])
def test_a_cls_member_that_is_no_class_index_is_refused(tmp_path, payload, shown):
    shard = _shard(tmp_path / "s.tar", {"a.jpg": b"A", "a.cls": payload})
    assert _refusal(shard, tmp_path / "index") == (f"{shard}: member a.cls: {shown} is not a class index 0..999 "
                                                   "(ASCII digits)")


# --- the image's name: the .json filename, else the key ---------------------------------------------------------


@pytest.mark.parametrize("meta, name", [
    (b'{"filename": "n01440764/ILSVRC2012_val_00000005.JPEG"}', "ILSVRC2012_val_00000005.JPEG"),
    (b'{"filename": " C:\\\\val\\\\x.JPEG "}', "x.JPEG"),       # a Windows path, white space around it
    (b'{"filename": "   "}', "k.jpg"),                          # no name: the member's
    (b'{"filename": 5}', "k.jpg"),
    (b'{"other": "y.JPEG"}', "k.jpg"),
    (b'["y.JPEG"]', "k.jpg"),                                   # not an object
    (None, "k.jpg"),
])
def test_the_image_name_comes_from_the_json_filename_else_the_member(tmp_path, meta, name):
    members = {"k.jpg": b"K", "k.cls": b"3"} | ({"k.json": meta} if meta is not None else {})
    got, labels = _read(_shard(tmp_path / "s.tar", members), tmp_path / "index")
    assert got == {name: b"K"} and labels == {name: 3}


@pytest.mark.parametrize("filename", ["dir/", "..", ".", "a/..", "x\ty.JPEG"])
def test_a_json_filename_that_names_no_file_is_refused(tmp_path, filename):
    shard = _shard(tmp_path / "s.tar", {"k.jpg": b"K", "k.cls": b"3",
                                        "k.json": json.dumps({"filename": filename}).encode()})
    assert _refusal(shard, tmp_path / "index") == f"{shard}: member k.json: {filename!r} is not a file name"


def test_a_long_bad_json_filename_is_shown_to_60_characters(tmp_path):
    filename = "\x01" + "y" * 100
    shard = _shard(tmp_path / "s.tar", {"k.jpg": b"K", "k.cls": b"3",
                                        "k.json": json.dumps({"filename": filename}).encode()})
    assert _refusal(shard, tmp_path / "index") == f"{shard}: member k.json: {filename[:60]!r} is not a file name"


def test_a_validation_stem_key_names_its_jpeg_whatever_the_folder(tmp_path):
    # timm/imagenet-1k-wds keys its validation images by stem; the original file is STEM.JPEG
    stem, short = "val/ILSVRC2012_val_00000002", "val/ILSVRC2012_val_0000001"   # 8 digits, and 7
    deep = "a/b/ILSVRC2012_val_00000004"
    shard = _shard(tmp_path / "s.tar", {f"{stem}.jpg": b"V", f"{stem}.cls": b"9", f"{short}.jpg": b"W",
                                        f"{short}.cls": b"8", f"{deep}.png": b"D", f"{deep}.cls": b"7"})
    got, labels = _read(shard, tmp_path / "index")
    assert got == {"ILSVRC2012_val_00000002.JPEG": b"V", "ILSVRC2012_val_00000004.JPEG": b"D",
                   "val/ILSVRC2012_val_0000001.jpg": b"W"}
    assert labels == {"ILSVRC2012_val_00000002.JPEG": 9, "ILSVRC2012_val_00000004.JPEG": 7,
                      "val/ILSVRC2012_val_0000001.jpg": 8}


def test_a_json_member_over_one_mebibyte_is_refused(tmp_path):
    meta = json.dumps({"filename": "x.JPEG", "pad": " " * (1 << 20)}).encode()
    shard = _shard(tmp_path / "s.tar", {"k.jpg": b"K", "k.cls": b"3", "k.json": meta})
    assert _refusal(shard, tmp_path / "index") == (f"{shard}: member k.json: {len(meta):,} bytes, more than the "
                                                   "1,048,576 of a sample's metadata")
    fits = json.dumps({"filename": "x.JPEG", "pad": ""}).encode()
    fits = fits[:-1] + b" " * ((1 << 20) - len(fits)) + b"}"                    # exactly 1 MiB
    assert _read(_shard(tmp_path / "t.tar", {"k.jpg": b"K", "k.cls": b"3", "k.json": fits}), tmp_path / "index")[1] \
        == {"x.JPEG": 3}
