"""``validation/sources/factory.py``: what ``--data`` is, told by content, for inputs built here by hand (tarfile,
pyarrow, plain files), never by our own writers: the kind, root, layout, names, labels, the words of each note
and refusal, and the bytes each reader gives back."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources import factory, hf

V1, V2, V3 = (f"ILSVRC2012_val_0000000{i}.JPEG" for i in (1, 2, 3))
HUB1 = "ILSVRC2012_val_00000001_n01751748.JPEG"      # the Hub's parquet names carry the wnid
HUB2 = "ILSVRC2012_val_00000002_n09193705.JPEG"


@pytest.fixture(autouse=True)
def default_index_dir(tmp_path, monkeypatch):
    """Tar indexes go under XDG_CACHE_HOME unless ``index_dir`` says where: kept out of the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _img(name: str) -> bytes:
    return f"bytes of {name}".encode()


def _tar(path: Path, members: dict[str, bytes], gz: bool = False) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, payload in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            tf.addfile(ti, io.BytesIO(payload))
    path.write_bytes(gzip.compress(buf.getvalue()) if gz else buf.getvalue())
    return path


def _shard(path: Path, samples: dict[str, int]) -> Path:
    """A WebDataset shard: KEY.jpg and KEY.cls for each sample."""
    members = {}
    for key, label in samples.items():
        members[f"{key}.jpg"] = _img(key)
        members[f"{key}.cls"] = str(label).encode()
    return _tar(path, members)


def _parquet(path: Path, rows: dict[str, int]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": [{"bytes": _img(n), "path": n} for n in rows],
                             "label": pa.array(list(rows.values()), pa.int64())}), path)
    return path


def _read_all(src) -> list[bytes]:
    reader = src.make_reader(src.names)
    return [reader.read(i) for i in range(len(src.names))]


def test_a_flat_folder(tmp_path):
    for n in (V2, V1):
        (tmp_path / n).write_bytes(_img(n))
    (tmp_path / "notes.txt").write_text("not an image")
    src = factory.open_source(tmp_path)
    assert (src.kind, src.root, src.layout, src.names) == ("folder", tmp_path, "flat", [V1, V2])
    assert (src.labels, src.label_source, src.uri, src.notes, src.renamed) == (None, None, None, [], {})
    assert _read_all(src) == [_img(V1), _img(V2)]


def test_a_folder_with_images_is_read_as_images_whatever_archives_lie_beside_them(tmp_path):
    (tmp_path / V1).write_bytes(_img(V1))
    _shard(tmp_path / "shard.tar", {"ILSVRC2012_val_00000009": 3})
    _parquet(tmp_path / "validation-0.parquet", {V3: 4})
    src = factory.open_source(tmp_path)
    assert (src.kind, src.names) == ("folder", [V1])


def test_a_tar_of_images_read_in_place(tmp_path):
    path = _tar(tmp_path / "ILSVRC2012_img_val.tar", {V2: _img(V2), "README": b"x", V1: _img(V1)})
    src = factory.open_source(path)
    assert (src.kind, src.root, src.layout, src.names, src.labels) == ("tar", path, "flat", [V1, V2], None)
    assert _read_all(src) == [_img(V1), _img(V2)]
    assert src.make_reader([V2]).read(0) == _img(V2)


def test_a_tar_of_an_imagefolder_tree_under_one_top_folder(tmp_path):
    tree = {f"val/n01751748/{V1}": _img(V1), f"val/n09193705/{V2}": _img(V2),
            "val/n01751748/x.JPEG/readme": b"a member whose folder looks like an image"}
    path = _tar(tmp_path / "val.tar", tree)
    src = factory.open_source(path)
    assert (src.kind, src.layout) == ("tar", "imagefolder")
    assert src.names == [f"n01751748/{V1}", f"n09193705/{V2}"]
    assert _read_all(src) == [_img(V1), _img(V2)]
    gz = _tar(tmp_path / "val.tar.gz", tree, gz=True)    # told by content, not by name: a tar, compressed
    with pytest.raises(SenetZooError, match=r"val.tar.gz: is a compressed tar, which cannot be read in place"):
        factory.open_source(gz)


def test_a_single_webdataset_shard(tmp_path):
    path = _shard(tmp_path / "one.tar", {"ILSVRC2012_val_00000002": 7, "ILSVRC2012_val_00000001": 5})
    src = factory.open_source(path)
    assert (src.kind, src.root, src.layout) == ("wds", path, "flat")
    assert len(src.names) == 2 and src.labels == {src.names[0]: 5, src.names[1]: 7}
    assert src.label_source == "WebDataset .cls members of 1 shard (sorted-wnid indices, as timm/imagenet-1k-wds)"
    assert _read_all(src) == [_img("ILSVRC2012_val_00000001"), _img("ILSVRC2012_val_00000002")]


def test_a_folder_of_webdataset_shards(tmp_path):
    _shard(tmp_path / "b.tar", {"ILSVRC2012_val_00000003": 1})
    _shard(tmp_path / "a.TAR", {"ILSVRC2012_val_00000002": 2, "ILSVRC2012_val_00000001": 0})
    _shard(tmp_path / ".hidden.tar", {"ILSVRC2012_val_00000009": 9})    # hidden files are not shards
    (tmp_path / "sub.tar").mkdir()                                        # nor folders named like one
    src = factory.open_source(tmp_path)
    assert (src.kind, src.root, src.layout) == ("wds", tmp_path, "flat")
    assert len(src.names) == 3 and [src.labels[n] for n in src.names] == [0, 2, 1]
    assert src.label_source == "WebDataset .cls members of 2 shards (sorted-wnid indices, as timm/imagenet-1k-wds)"
    assert _read_all(src) == [_img(f"ILSVRC2012_val_0000000{i}") for i in (1, 2, 3)]
    assert src.notes == []


def test_a_folder_of_tars_one_of_which_is_no_shard_is_refused_naming_it(tmp_path):
    _shard(tmp_path / "a.tar", {"ILSVRC2012_val_00000001": 0})
    plain = _tar(tmp_path / "b.tar", {V2: _img(V2)})
    with pytest.raises(SenetZooError) as e:
        factory.open_source(tmp_path)
    assert str(e.value) == (f"{plain}: not a WebDataset shard (no KEY.cls members); pass a single tar file as "
                            "--data to read its images by name")


def test_a_folder_of_tar_and_parquet_files_is_refused(tmp_path):
    _shard(tmp_path / "a.tar", {"ILSVRC2012_val_00000001": 0})
    _parquet(tmp_path / "validation-0.parquet", {V2: 1})
    with pytest.raises(SenetZooError) as e:
        factory.open_source(tmp_path)
    assert str(e.value) == (f"{tmp_path}: holds both tar (a.tar, ...) and parquet files (validation-0.parquet, ...);"
                            " point --data at one of them")


def test_brace_patterns_name_shards_that_must_all_be_there(tmp_path):
    _shard(tmp_path / "val-000000.tar", {"ILSVRC2012_val_00000002": 2})
    _shard(tmp_path / "val-000001.tar", {"ILSVRC2012_val_00000001": 1})
    pattern = str(tmp_path / "val-{000000..000001}.tar")
    src = factory.open_source(pattern)
    assert (src.kind, src.root) == ("wds", Path(pattern))
    assert [src.labels[n] for n in src.names] == [1, 2]
    assert src.label_source.startswith("WebDataset .cls members of 2 shards ")
    assert _read_all(src) == [_img("ILSVRC2012_val_00000001"), _img("ILSVRC2012_val_00000002")]
    with pytest.raises(SenetZooError) as e:
        factory.open_source(str(tmp_path / "val-{000000..000002}.tar"))
    assert str(e.value) == (f"{tmp_path / 'val-000002.tar'}: no such shard (shard 3 of the 3 that "
                            "val-{000000..000002}.tar names)")
    with pytest.raises(SenetZooError) as e:
        factory.open_source(str(tmp_path / "x-{0000..1200}.tar"))
    assert str(e.value) == f"{tmp_path / 'x-0000.tar'}: no such shard (shard 1 of the 1,201 that x-{{0000..1200}}.tar names)"


def test_a_parquet_folder_reads_only_the_validation_split(tmp_path):
    _parquet(tmp_path / "validation-00001-of-00002.parquet", {HUB2: 2})
    _parquet(tmp_path / "validation-00000-of-00002.parquet", {HUB1: 1})
    _parquet(tmp_path / "train-00000-of-00001.parquet", {"ILSVRC2012_val_00000003_n01751748.JPEG": 0})
    src = factory.open_source(tmp_path)
    assert (src.kind, src.root, src.layout) == ("parquet", tmp_path, "flat")
    assert src.names == [V1, V2] and src.labels == {V1: 1, V2: 2}
    assert src.renamed == {V1: HUB1, V2: HUB2}
    assert src.notes == ["read the 2 validation-*.parquet of 3 parquet files"]
    assert src.label_source == "parquet label column of 2 files (sorted-wnid indices, as the Hub's imagenet-1k)"
    assert _read_all(src) == [_img(HUB1), _img(HUB2)]
    assert src.make_reader([V2]).read(0) == _img(HUB2)


def test_a_parquet_folder_of_validation_files_only_has_no_note(tmp_path):
    _parquet(tmp_path / "validation-0.PARQUET", {V1: 1})
    src = factory.open_source(tmp_path)
    assert (src.kind, src.notes, src.renamed, src.names) == ("parquet", [], {}, [V1])
    assert src.label_source == "parquet label column of 1 file (sorted-wnid indices, as the Hub's imagenet-1k)"


@pytest.mark.parametrize("other", ["train-00000-of-00001.parquet", "test-00000-of-00001.parquet"])
def test_a_parquet_folder_without_the_validation_split_is_refused(tmp_path, other):
    _parquet(tmp_path / other, {V1: 1})
    _parquet(tmp_path / "zz.parquet", {V2: 1})
    with pytest.raises(SenetZooError) as e:
        factory.open_source(tmp_path)
    assert str(e.value) == (f"{tmp_path}: holds {other}, ... but no validation-*.parquet: point --data at the "
                            "validation split")


def test_a_parquet_folder_of_files_named_otherwise_is_read_whole(tmp_path):
    _parquet(tmp_path / "part-0.parquet", {V1: 1})
    _parquet(tmp_path / "part-1.parquet", {V2: 2})
    src = factory.open_source(tmp_path)
    assert (src.names, src.notes) == ([V1, V2], [])


def test_a_parquet_file_named_on_the_command_line_is_read_whatever_its_name(tmp_path):
    path = _parquet(tmp_path / "train-00000-of-00001.parquet", {HUB2: 9, HUB1: 8})
    src = factory.open_source(path)
    assert (src.kind, src.root, src.names, src.labels, src.notes) == ("parquet", path, [V1, V2], {V1: 8, V2: 9}, [])
    assert src.label_source.startswith("parquet label column of 1 file ")
    assert _read_all(src) == [_img(HUB1), _img(HUB2)]


def test_the_same_image_under_both_names_is_refused(tmp_path):
    (tmp_path / HUB1).write_bytes(_img(HUB1))
    (tmp_path / V1).write_bytes(_img(V1))
    with pytest.raises(SenetZooError) as e:
        factory.open_source(tmp_path)
    assert str(e.value) == f"{tmp_path}: holds {V1} and {HUB1}: the same validation image twice"


def test_a_folder_of_hub_named_images_is_listed_under_canonical_names(tmp_path):
    for n in (HUB2, HUB1, "other.JPEG"):
        (tmp_path / n).write_bytes(_img(n))
    src = factory.open_source(tmp_path)
    assert src.names == [V1, V2, "other.JPEG"] and src.renamed == {V1: HUB1, V2: HUB2} and src.labels is None
    assert _read_all(src) == [_img(HUB1), _img(HUB2), _img("other.JPEG")]


def test_a_file_that_is_neither_tar_nor_parquet_and_a_missing_path_are_refused(tmp_path):
    junk = tmp_path / "val.zip"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 600)
    with pytest.raises(SenetZooError, match=r"val.zip: not a directory, tar or parquet file"):
        factory.open_source(junk)
    with pytest.raises(SenetZooError, match=r"nowhere: no such directory or file"):
        factory.open_source(tmp_path / "nowhere")


def test_hf_uris_hand_over_to_the_split_hf_fetched(tmp_path, monkeypatch):
    snap = tmp_path / "snapshots" / ("c" * 40)
    (snap / "data").mkdir(parents=True)
    files = [_parquet(snap / "data" / "validation-00000-of-00001.parquet", {HUB1: 3})]
    asked = []

    def fetch(uri):
        asked.append(uri)
        return hf.HubSplit("parquet", files, "hf://datasets/o/n@" + "c" * 40, ["verified"])

    monkeypatch.setattr(hf, "fetch", fetch)
    src = factory.open_source("hf://datasets/o/n")
    assert asked == ["hf://datasets/o/n"]
    assert (src.kind, src.root, src.uri, src.names, src.labels) == (
        "parquet", snap / "data", "hf://datasets/o/n@" + "c" * 40, [V1], {V1: 3})
    assert src.notes == ["verified"] and _read_all(src) == [_img(HUB1)]
    assert src.label_source.startswith("parquet label column of 1 file ")

    shards = [_shard(snap / "imagenet1k-validation-00.tar", {"ILSVRC2012_val_00000002": 2}),
              _shard(snap / "imagenet1k-validation-01.tar", {"ILSVRC2012_val_00000001": 1})]
    monkeypatch.setattr(hf, "fetch", lambda uri: hf.HubSplit("wds", shards, "hf://datasets/o/w@x", ["a", "b"]))
    src = factory.open_source("hf://datasets/o/w")
    assert (src.kind, src.root, src.uri, src.notes) == ("wds", snap, "hf://datasets/o/w@x", ["a", "b"])
    assert [src.labels[n] for n in src.names] == [1, 2]
    assert _read_all(src) == [_img("ILSVRC2012_val_00000001"), _img("ILSVRC2012_val_00000002")]


def test_notes_are_given_once_each():
    assert factory._unique(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]


def test_tar_indexes_go_where_index_dir_says_for_every_form_read_through_tar_headers(tmp_path, monkeypatch,
                                                                                    default_index_dir):
    data = tmp_path / "data"
    (data / "shards").mkdir(parents=True)
    one = _tar(data / "images.tar", {V1: _img(V1)})
    _shard(data / "shards" / "val-0.tar", {"ILSVRC2012_val_00000001": 1})
    _shard(data / "shards" / "val-1.tar", {"ILSVRC2012_val_00000002": 2})
    (data / "a").mkdir()
    (data / "b").mkdir()
    hub = [_shard(data / "a" / "imagenet1k-validation-00.tar", {"ILSVRC2012_val_00000003": 3}),
           _shard(data / "b" / "imagenet1k-validation-01.tar", {"ILSVRC2012_val_00000004": 4})]
    monkeypatch.setattr(hf, "fetch", lambda uri: hf.HubSplit("wds", hub, "hf://datasets/o/w@x", []))
    for n, what in enumerate((one, data / "shards", str(data / "shards" / "val-{0..1}.tar"), "hf://datasets/o/w"), 1):
        index = tmp_path / f"index-{n}"
        src = factory.open_source(what, index_dir=index)
        assert len(_files(index)) == (1 if n == 1 else 2), what
        assert _files(default_index_dir) == [], what
    assert src.root == data / "a"                      # the Hub split's root: its first file's folder
    factory.open_source(one)
    assert len(_files(default_index_dir)) == 1


def _block_index(tar_path: Path, index_dir: Path) -> None:
    """A folder where the tar's index file would go: that one index cannot be kept (a note says so)."""
    from senet_zoo.validation.sources.tar import index_file

    index_file(tar_path.absolute(), index_dir).mkdir(parents=True)


NOT_KEPT = "tar index not kept (Is a directory); the next run reads the tar's headers again"


def test_the_notes_of_reading_each_tar_are_kept_once(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    first = _shard(shards / "val-0.tar", {"ILSVRC2012_val_00000001": 1})
    second = _shard(shards / "val-1.tar", {"ILSVRC2012_val_00000002": 2})
    index = tmp_path / "index"
    _block_index(first, index)
    assert factory.open_source(shards, index_dir=index).notes == [NOT_KEPT]
    pattern = str(shards / "val-{0..1}.tar")
    assert factory.open_source(pattern, index_dir=tmp_path / "index2").notes == []
    _block_index(first, tmp_path / "index3")
    assert factory.open_source(pattern, index_dir=tmp_path / "index3").notes == [NOT_KEPT]
    _block_index(second, tmp_path / "index4")
    _block_index(first, tmp_path / "index4")
    assert factory.open_source(pattern, index_dir=tmp_path / "index4").notes == [NOT_KEPT]   # once, not twice
    images = _tar(tmp_path / "images.tar", {V1: _img(V1)})
    _block_index(images, tmp_path / "index5")
    assert factory.open_source(images, index_dir=tmp_path / "index5").notes == [NOT_KEPT]


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch):
    import errno
    import os

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(SenetZooError) as e:
        factory.open_source(tmp_path)
    assert str(e.value) == f"{tmp_path}: cannot list directory (Permission denied)"


def test_a_tar_without_images_or_with_a_folder_named_like_one_is_refused_naming_it(tmp_path):
    empty = _tar(tmp_path / "docs.tar", {"README": b"x", "a/b.txt": b"y"})
    with pytest.raises(SenetZooError) as e:
        factory.open_source(empty)
    assert str(e.value) == f"{empty}: contains no images (.jpeg, .jpg, .png, ...)"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo(V1)
        ti.type, ti.linkname = tarfile.SYMTYPE, V2
        tf.addfile(ti)
        ti = tarfile.TarInfo(V1)
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
    odd = tmp_path / "odd.tar"
    odd.write_bytes(buf.getvalue())
    with pytest.raises(SenetZooError) as e:
        factory.open_source(odd)
    assert str(e.value) == (f"{odd}: member {V1} replaces a symbolic link of the same name, which tar -x and "
                            "Python's tarfile extract differently")


@pytest.mark.parametrize("top", [".val", "val"])
def test_a_tar_reads_what_extracting_it_gives_hidden_folders_included(tmp_path, top):
    """A tar whose top folder is hidden (the one --data would name) or not, with a hidden sub-folder of
    thumbnails in it: the same names and bytes as tarfile's own extraction opened as a folder."""
    members = {f"{top}/{V2}": _img(V2), f"{top}/{V1}": _img(V1), f"{top}/.thumbs/{V1}": b"a thumbnail"}
    path = _tar(tmp_path / "v.tar", members)
    with tarfile.open(path) as t:
        t.extractall(tmp_path / "out", filter="data")
    folder = factory.open_source(tmp_path / "out" / top)
    assert (folder.layout, folder.names) == ("flat", [V1, V2])
    src = factory.open_source(path)
    assert (src.kind, src.layout, src.names) == ("tar", "flat", folder.names)
    assert _read_all(src) == _read_all(folder) == [_img(V1), _img(V2)]
