"""Archives read as what the user holds (issue 14): a tar as ``tar -x`` lays it out (links, duplicate names,
sparse and pax members), its kept index checked against the archive, hostile headers and brace patterns within
bounds, WebDataset samples by webdataset's own rule, and parquet read in a bounded window.

The expectation is always outside our tar code: the folder GNU tar extracts (read by the folder source), a
literal, or pyarrow's whole-table read.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation import data
from senet_zoo.validation.sources import tar as tar_source
from senet_zoo.validation.sources import wds
from senet_zoo.validation.sources.factory import open_source

W1, W2 = "n01440764", "n01443537"   # two class folders of an ImageFolder tree
GNU_TAR = shutil.which("tar")
needs_gnu_tar = pytest.mark.skipif(
    GNU_TAR is None or "GNU tar" not in subprocess.run([GNU_TAR or "tar", "--version"], capture_output=True,
                                                       text=True).stdout, reason="GNU tar is the reference")


def member(tf: tarfile.TarFile, name: str, payload: bytes | None = None, type=tarfile.REGTYPE, link: str = "",
           pax: dict | None = None) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = type, link, 1_500_000_000
    if pax:
        ti.pax_headers = pax
    if payload is not None:
        ti.size = len(payload)
    tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)


def read_source(path, index_dir) -> tuple[dict[str, bytes], list[str]]:
    src = open_source(path, index_dir)
    reader = src.make_reader(src.names)
    return {n: reader.read(i) for i, n in enumerate(src.names)}, src.notes


def extracted(tar: Path, dest: Path, top: str = "") -> dict[str, bytes]:
    """What GNU tar extracts, read back as the folder source reads a folder."""
    dest.mkdir()
    subprocess.run([GNU_TAR, "-xf", str(tar), "-C", str(dest)], capture_output=True)
    src = open_source(dest / top if top else dest)
    reader = src.make_reader(src.names)
    return {n: reader.read(i) for i, n in enumerate(src.names)}


# --- tar -x: links, duplicates, sparse and pax members -------------------------------------------------------


@needs_gnu_tar
def test_links_in_a_tar_resolve_to_what_extraction_gives(tmp_path):
    tar = tmp_path / "tree.tar"
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as tf:
        member(tf, f"val/{W1}/a.JPEG", b"a-bytes")
        member(tf, f"val/{W1}/b.JPEG", type=tarfile.LNKTYPE, link=f"val/{W1}/a.JPEG")  # tar cf of a deduped tree
        member(tf, f"val/{W2}/c.JPEG", type=tarfile.SYMTYPE, link=f"../{W1}/a.JPEG")
        member(tf, f"val/{W2}/d.JPEG", type=tarfile.SYMTYPE, link="c.JPEG")            # a chain of two
        member(tf, f"val/{W2}/e.JPEG", b"e-bytes")
        member(tf, f"val/{W2}/f.JPEG", type=tarfile.SYMTYPE, link="./" * 60 + "e.JPEG")  # a GNU long link name
        member(tf, f"./val/{W2}/g.JPEG", b"g-bytes")
    expected = extracted(tar, tmp_path / "out", "val")
    got, notes = read_source(tar, tmp_path / "index")
    assert got == expected and len(got) == 7 and notes == []
    assert got[f"{W2}/d.JPEG"] == b"a-bytes" and got[f"{W1}/b.JPEG"] == b"a-bytes"


@needs_gnu_tar
def test_a_duplicated_name_is_read_from_its_last_member_and_noted(tmp_path):
    tar = tmp_path / "dup.tar"
    with tarfile.open(tar, "w") as tf:
        member(tf, f"{W1}/a.JPEG", b"first")
        member(tf, f"{W1}/kept.JPEG", type=tarfile.LNKTYPE, link=f"{W1}/a.JPEG")   # linked before the replacement
        member(tf, f"{W1}/b.JPEG", b"b")
        member(tf, f"{W1}/a.JPEG", b"second")
    expected = extracted(tar, tmp_path / "out")
    got, notes = read_source(tar, tmp_path / "index")
    assert got == expected == {f"{W1}/a.JPEG": b"second", f"{W1}/b.JPEG": b"b", f"{W1}/kept.JPEG": b"first"}
    assert notes == [f"dup.tar: 1 image name occurs more than once ({W1}/a.JPEG); each is read from its last "
                     "member, as tar -x leaves it"]
    from senet_zoo.validation.runner import data_section

    assert data_section(data.load_eval_set(tar, index_dir=tmp_path / "index"))["notes"] == notes   # the record's


@pytest.mark.parametrize("name, link, type, problem", [
    ("s.JPEG", "/etc/hostname", tarfile.SYMTYPE, "(a symbolic link to /etc/hostname) leads outside the archive, to "
                                                 "/etc/hostname"),
    ("s.JPEG", "../../x.JPEG", tarfile.SYMTYPE, "(a symbolic link to ../../x.JPEG) leads above the archive's root"),
    ("s.JPEG", "t.JPEG", tarfile.SYMTYPE, "goes through more than 40 symbolic links (a loop)"),
    ("s.JPEG", "sub", tarfile.SYMTYPE, "leads to sub, which is no file of the archive"),
    ("s.JPEG", "nowhere/../sub/x.JPEG", tarfile.SYMTYPE, "goes through nowhere, which is no directory of the archive"),
    ("h.JPEG", "missing.JPEG", tarfile.LNKTYPE, "is a hard link to missing.JPEG, which is not extracted before it"),
])
def test_a_link_that_cannot_be_followed_inside_the_archive_is_refused_in_one_line(tmp_path, name, link, type,
                                                                                   problem):
    tar = tmp_path / "links.tar"
    with tarfile.open(tar, "w") as tf:
        member(tf, "sub/x.JPEG", b"x")
        if link == "t.JPEG":
            member(tf, "t.JPEG", type=tarfile.SYMTYPE, link="s.JPEG")
        member(tf, name, type=type, link=link)
    with pytest.raises(SenetZooError) as e:
        open_source(tar, tmp_path / "index")
    message = str(e.value)
    assert message.startswith(f"{tar}: member ") and problem in message and "\n" not in message
    assert message.endswith("tar -x gives no image there; extract the tar and check the link, or remove it")


@needs_gnu_tar
@pytest.mark.parametrize("fmt", ["gnu", "0.0", "0.1", "1.0"])
def test_sparse_members_read_as_extracted(tmp_path, fmt):
    tree = tmp_path / "tree" / W1
    tree.mkdir(parents=True)
    with open(tree / "holes.JPEG", "wb") as f:  # a file with holes, as GNU tar -S stores it
        f.write(b"\xff\xd8head")
        f.seek(300_000)
        f.write(b"middle")
        f.seek(700_000)
        f.write(b"tail")
    (tree / "plain.JPEG").write_bytes(b"plain")
    tar = tmp_path / "sparse.tar"
    opts = ["--format=gnu"] if fmt == "gnu" else ["--format=posix", f"--sparse-version={fmt}"]
    subprocess.run([GNU_TAR, *opts, "-S", "-cf", str(tar), "-C", str(tmp_path / "tree"), W1], check=True)
    assert any(m.sparse for m in tarfile.open(tar).getmembers())   # it is stored sparse
    expected = extracted(tar, tmp_path / "out")
    got, _ = read_source(tar, tmp_path / "index")
    assert got == expected and len(got[f"{W1}/holes.JPEG"]) == 700_004


@needs_gnu_tar
def test_pax_members_read_as_extracted(tmp_path):
    long_dir = "d" * 120
    tar = tmp_path / "pax.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        member(tf, f"{W1}/{long_dir}/ünïcode.JPEG", b"long pax path")
        member(tf, f"{W1}/short.JPEG", b"path from pax", pax={"path": f"{W2}/renamed.JPEG"})
        member(tf, f"{W1}/link.JPEG", type=tarfile.SYMTYPE, link=f"{long_dir}/ünïcode.JPEG")  # pax linkpath
    expected = extracted(tar, tmp_path / "out")
    got, _ = read_source(tar, tmp_path / "index")
    assert got == expected and got[f"{W2}/renamed.JPEG"] == b"path from pax"
    assert got[f"{W1}/link.JPEG"] == b"long pax path"


# --- hostile headers: one line, at once ---------------------------------------------------------------------


def _set_field(raw: bytearray, header: int, start: int, end: int, value: bytes) -> None:
    """Write a header field and fix the header's checksum, as a tar writer would have."""
    raw[header + start:header + end] = value
    raw[header + 148:header + 156] = b" " * 8
    raw[header + 148:header + 156] = b"%06o\0 " % sum(raw[header:header + 512])


def _negative_base256(n: int) -> bytes:
    return b"\xff" + (256 ** 11 - n).to_bytes(11, "big")


def _pax_block(records: dict[str, str], size: int | None = None) -> bytes:
    """A pax extended header ('x') holding ``records``, written by hand so its values can be anything."""
    body = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode()
        n = len(text) + len(str(len(text)))
        n += len(str(n)) - len(str(len(text)))
        body += str(n).encode() + text
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(body) if size is None else size
    return pax.tobuf(tarfile.USTAR_FORMAT) + body.ljust((len(body) + 511) // 512 * 512, b"\0")


def _hostile(tmp_path: Path, how: str) -> Path:
    path = tmp_path / f"{how}.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(3):
            member(tf, f"{W1}/{i}.JPEG", bytes(2000))
        member(tf, f"{W1}/" + ("n" * 200 if how == "long name" else "p") + ".JPEG", bytes(2000))
    raw = bytearray(path.read_bytes())
    fourth = 3 * 2560
    if how == "base-256 size":   # the second member's size: -512, back to its own header (tarfile loops)
        _set_field(raw, 2560, 124, 136, _negative_base256(512))
    if how == "long name":       # the GNU long-name header's own size
        _set_field(raw, fourth, 124, 136, _negative_base256(512))
    if how == "pax size":        # a pax size override, negative
        raw[fourth:fourth] = _pax_block({"size": "-2048"})
    if how == "pax chain":       # extended headers, each announcing the next, past any recursion limit
        raw[fourth:fourth] = _pax_block({"comment": "x"}) * 3000
    if how == "huge pax":        # an extended header claiming 2 GiB (tarfile would read it all)
        raw[fourth:fourth] = _pax_block({}, size=2 << 30)[:512]
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("how, message", [
    ("base-256 size", "member n01440764/1.JPEG: a negative size (-512 bytes)"),
    ("pax size", "member n01440764/p.JPEG: a negative size (-2,048 bytes)"),
    ("long name", "an extended header at byte 7,680 has a negative size (tarfile would read to the end of the file)"),
    ("pax chain", "extended headers chained too deep after member n01440764/2.JPEG"),
    ("huge pax", "an extended header at byte 7,680 claims 2,147,483,648 bytes (one member's headers need at most "
                 "1 MiB)"),
])
def test_hostile_tar_headers_are_refused_in_one_line_within_bounds(tmp_path, how, message):
    path = _hostile(tmp_path, how)
    start = time.monotonic()
    with pytest.raises(SenetZooError) as e:
        open_source(path, tmp_path / "index")
    assert time.monotonic() - start < 5
    assert str(e.value) == f"{path}: damaged tar header: {message}"
    assert not (tmp_path / "index").exists()


@needs_gnu_tar
def test_a_sparse_header_whose_next_offset_goes_back_is_refused(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "s.JPEG", "wb") as f:
        f.seek(100_000)
        f.write(b"x")
    path = tmp_path / "back.tar"
    subprocess.run([GNU_TAR, "--format=gnu", "-S", "-cf", str(path), "-C", str(tree), "s.JPEG"], check=True)
    raw = bytearray(path.read_bytes())
    _set_field(raw, 0, 124, 136, _negative_base256(4096))   # the stored size; the real size stays positive
    path.write_bytes(bytes(raw))
    with pytest.raises(SenetZooError, match=r"member s\.JPEG: the next header at byte .* does not come after"):
        open_source(path, tmp_path / "index")


# --- the kept index -----------------------------------------------------------------------------------------


def _tree_tar(path: Path, names: list[str], sizes: dict[str, int] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for n in names:
            member(tf, f"{W1}/{n}", n.encode() * (sizes or {}).get(n, 40))
    return path


def _same_size_rewrite(path: Path, other: Path) -> None:
    """``cp -p other path``: new bytes in place, same size, the old mtime put back."""
    st = path.stat()
    assert other.stat().st_size == st.st_size
    shutil.copyfile(other, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


@needs_gnu_tar
def test_a_tar_rewritten_with_the_same_size_and_mtime_is_read_again(tmp_path):
    names = [f"{i:03d}.JPEG" for i in range(30)]
    sizes = {n: 40 + 70 * (i % 3) for i, n in enumerate(names)}   # members of 1, 2 and 3 blocks
    tar = _tree_tar(tmp_path / "val.tar", names, sizes)
    first, _ = read_source(tar, tmp_path / "index")
    # the same members in another order: the same size, but each offset now holds another image
    _same_size_rewrite(tar, _tree_tar(tmp_path / "other.tar", names[::-1], sizes))
    expected = extracted(tar, tmp_path / "out")
    got, _ = read_source(tar, tmp_path / "index")
    assert got == expected == first   # the same files, each read where it now is


# 100 members of one block each: the headers compared before a kept index is used are the first, the last and
# those at i * 99 // 24 (..., 45, 49, 53, ...) besides the random ones, turned off below; member 50 is none of them
BETWEEN_SAMPLES = 50


def _renamed_between_samples(tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[str]]:
    """(a tar of 100 members whose index is kept, the same tar with member 50 renamed at the same size, its
    names), with the header sample's random picks turned off: the sample alone cannot see the rename."""
    from senet_zoo.validation.sources.tar import index as tar_index

    monkeypatch.setattr(tar_index, "RANDOM", 0)
    names = [f"{i:03d}.JPEG" for i in range(100)]
    tar = _tree_tar(tmp_path / "val.tar", names)
    read_source(tar, tmp_path / "index")
    renamed = names[:BETWEEN_SAMPLES] + ["zzz.JPEG"] + names[BETWEEN_SAMPLES + 1:]
    return tar, _tree_tar(tmp_path / "new.tar", renamed), renamed


@needs_gnu_tar
def test_a_same_size_rewrite_that_the_header_sample_misses_is_told_by_the_stamp(tmp_path, monkeypatch):
    """``cp -p``: the same size and mtime, one header changed between the sampled ones. The stamp's ctime
    tells: the tar is read as tar -x lays it out, the headers walked again without a note."""
    tar, new, renamed = _renamed_between_samples(tmp_path, monkeypatch)
    _same_size_rewrite(tar, new)
    got, notes = read_source(tar, tmp_path / "index")
    assert got == extracted(tar, tmp_path / "out") and sorted(got) == [f"{W1}/{n}" for n in sorted(renamed)]
    assert notes == []


@needs_gnu_tar
def test_a_rewrite_with_another_mtime_is_told_where_ctime_does_not_move(tmp_path, monkeypatch):
    """Rewritten in place at the same size, with a later mtime, where ctime does not move on a write (Windows'
    st_ctime is the creation time; some FUSE and network mounts): the kept index is given the tar's inode and
    ctime, so only the mtime can tell, and the changed header lies between the sampled ones."""
    tar, new, renamed = _renamed_between_samples(tmp_path, monkeypatch)
    st = tar.stat()
    shutil.copyfile(new, tar)
    os.utime(tar, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    index = next((tmp_path / "index").glob("val.tar.*.json"))
    kept = json.loads(index.read_text())
    now = tar.stat()
    assert kept["size"] == now.st_size and kept["mtime_ns"] != now.st_mtime_ns
    kept.update(ino=now.st_ino, ctime_ns=now.st_ctime_ns)
    index.write_text(json.dumps(kept))
    got, notes = read_source(tar, tmp_path / "index")
    assert got == extracted(tar, tmp_path / "out") and sorted(got) == [f"{W1}/{n}" for n in sorted(renamed)]
    assert notes == []


def test_a_kept_index_that_no_longer_matches_its_archive_is_rebuilt(tmp_path, monkeypatch):
    # a stamp that cannot tell (a copied index, a filesystem without ctime): the header sample must
    names = [f"{i:03d}.JPEG" for i in range(60)]
    tar = _tree_tar(tmp_path / "val.tar", names)
    read_source(tar, tmp_path / "index")
    last_renamed = names[:-1] + ["zzz.JPEG"]          # only the last header differs
    _same_size_rewrite(tar, _tree_tar(tmp_path / "new.tar", last_renamed))
    index = next((tmp_path / "index").glob("val.tar.*.json"))
    kept = json.loads(index.read_text())
    st = tar.stat()
    kept.update(mtime_ns=st.st_mtime_ns, ino=st.st_ino, ctime_ns=st.st_ctime_ns)
    index.write_text(json.dumps(kept))
    got, notes = read_source(tar, tmp_path / "index")
    assert sorted(got) == [f"{W1}/{n}" for n in last_renamed]
    assert notes == [f"val.tar: its kept index no longer matched the archive (member {W1}/059.JPEG at byte "
                     f"{59 * 1024:,}); its headers were read again"]
    assert read_source(tar, tmp_path / "index") == (got, [])   # and the rebuilt index is kept


@pytest.mark.parametrize("how", ["a file in the way", "a read-only folder"])
def test_an_index_folder_that_cannot_be_written_is_carried_on_without(tmp_path, how):
    tar = _tree_tar(tmp_path / "val.tar", ["a.JPEG", "b.JPEG"])
    if how == "a file in the way":
        (tmp_path / "blocked").write_text("")
        index_dir = tmp_path / "blocked" / "tar-index"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        index_dir = tmp_path / "ro"
        index_dir.mkdir(mode=0o555)
    s = data.load_eval_set(tar, index_dir=index_dir)
    assert s.names == [f"{W1}/a.JPEG", f"{W1}/b.JPEG"]
    assert len(s.notes) == 1 and s.notes[0].startswith("tar index not kept (") and "\n" not in s.notes[0]
    assert s.notes[0].endswith("the next run reads the tar's headers again")


# --- brace patterns -----------------------------------------------------------------------------------------


def test_brace_patterns_are_bounded_and_the_first_missing_shard_is_named_at_once(tmp_path):
    import tracemalloc

    for pattern, message in [
        ("s-{0..99999999999}.tar", "names more than 100,000 shards (100,000,000,000)"),
        ("s-{000000..999999}.tar", "names more than 100,000 shards (1,000,000)"),
        ("s-{00..99}-{0000..9999}.tar", "names more than 100,000 shards (1,000,000)"),
        ("s-{5..3}.tar", "empty range {5..3}"),
    ]:
        tracemalloc.start()
        start = time.monotonic()
        with pytest.raises(SenetZooError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_source(str(tmp_path / pattern))
        assert time.monotonic() - start < 1 and tracemalloc.get_traced_memory()[1] < 4 << 20
        tracemalloc.stop()
    shards = [_shard(tmp_path / f"w-{i:04d}.tar", {f"k{i}.jpg": b"x", f"k{i}.cls": b"1"}) for i in range(3)]
    shards[1].unlink()
    with pytest.raises(SenetZooError) as e:
        open_source(str(tmp_path / "w-{0000..9999}.tar"), tmp_path / "index")
    assert str(e.value) == f"{shards[1]}: no such shard (shard 2 of the 10,000 that w-{{0000..9999}}.tar names)"
    assert not (tmp_path / "index").exists()   # nothing read before all are there
    assert wds.shard_count("a-{000..099}-{0..9}.tar") == 1000
    assert list(wds.expand_braces("a-{08..10}-{0..1}")) == ["a-08-0", "a-08-1", "a-09-0", "a-09-1", "a-10-0",
                                                            "a-10-1"]


# --- WebDataset ---------------------------------------------------------------------------------------------


def _shard(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, payload in members.items():
            member(tf, name, payload)
        for name, target in (links or {}).items():
            member(tf, name, type=tarfile.SYMTYPE, link=target)
    return path


def test_webdataset_keys_end_at_the_first_dot_of_the_file_name(tmp_path):
    # webdataset's base_plus_ext: "a.v2.jpg" is key "a", field "v2.jpg"; "dir.x/b.c.png" is key "dir.x/b"
    shard = _shard(tmp_path / "s.tar", {"a.v2.jpg": b"A", "a.v2.cls": b"7", "dir.x/b.c.png": b"B", "dir.x/b.cls": b"8",
                                        "__meta__/x.cls": b"9", "README": b"no dot: no sample"})
    got, _ = read_source(shard, tmp_path / "index")
    assert got == {"a.v2.jpg": b"A", "dir.x/b.c.png": b"B"}
    assert open_source(shard, tmp_path / "index").labels == {"a.v2.jpg": 7, "dir.x/b.c.png": 8}
    assert [wds.split_key(n) for n in ("a.v2.jpg", "x/y.z/w.JPG", "nodot", "d.x/nodot")] == [
        ("a", "v2.jpg"), ("x/y.z/w", "JPG"), (None, ""), (None, "")]


def test_the_json_filename_names_the_image_whatever_its_key(tmp_path):
    # timm/imagenet-1k-wds keys are file stems, but any key is allowed: the name must come from the .json
    members = {}
    for i, (stem, label) in enumerate([("ILSVRC2012_val_00000003", 3), ("ILSVRC2012_val_00000001", 1)]):
        members |= {f"sample{i:06d}.jpg": stem.encode(), f"sample{i:06d}.cls": str(label).encode(),
                    f"sample{i:06d}.json": json.dumps({"filename": f"{stem}.JPEG"}).encode()}
    src = open_source(_shard(tmp_path / "s.tar", members), tmp_path / "index")
    assert src.names == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000003.JPEG"]
    assert src.labels == {"ILSVRC2012_val_00000001.JPEG": 1, "ILSVRC2012_val_00000003.JPEG": 3}
    assert src.make_reader(src.names).read(0) == b"ILSVRC2012_val_00000001"


@pytest.mark.parametrize("members, links, message", [
    ({"a.jpg": b"A", "a.cls": b"1", "b.jpg": b"B", "b.cls": b"2", "a.json": b"{}"}, None,
     "member a.json: the key a is used twice (also by a.jpg)"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.JPG": b"B"}, None,
     "member a.JPG: the sample a already has a jpg member (a.jpg)"),
    ({"a.jpg": b"A", "a.png": b"B", "a.cls": b"1"}, None, "member a.png: the sample a has 2 image members"),
    ({"a.jpg": b"A", "a.cls": "٣".encode()}, None, "member a.cls: '٣' is not a class index 0..999 (ASCII digits)"),
    ({"a.jpg": b"A", "a.cls": "３".encode()}, None, "is not a class index 0..999 (ASCII digits)"),
    ({"a.jpg": b"A", "a.cls": b"+5"}, None, "member a.cls: '+5' is not a class index"),
    ({"a.jpg": b"A", "a.cls": b"5" * 5000}, None, "member a.cls: 5,000 bytes, more than the 64 of a class index"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.json": b"[" * 100_000 + b"]" * 100_000}, None,
     "member a.json: not usable JSON (nested more than 64 levels deep)"),
    ({"a.jpg": b"A", "a.cls": b"1", "a.json": b'{"filename": "x\\ny.JPEG"}'}, None,
     "member a.json: 'x\\ny.JPEG' is not a file name"),
    ({"a.cls": b"1"}, {"a.jpg": "b.jpg"},
     "member a.jpg is a symbolic link to b.jpg: WebDataset readers skip it, so its sample would lose it"),
])
def test_webdataset_members_that_webdataset_would_not_read_as_one_sample_are_refused(tmp_path, members, links,
                                                                                     message):
    shard = _shard(tmp_path / "s.tar", members, links)
    start = time.monotonic()
    with pytest.raises(SenetZooError) as e:
        open_source(shard, tmp_path / "index")
    assert time.monotonic() - start < 2
    assert str(e.value).startswith(f"{shard}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_a_cls_member_may_carry_white_space_around_its_digits(tmp_path):
    shard = _shard(tmp_path / "s.tar", {"a.jpg": b"A", "a.cls": b" 7\n"})
    assert open_source(shard, tmp_path / "index").labels == {"a.jpg": 7}


# --- parquet: a bounded window whatever the row group --------------------------------------------------------


WINDOW_PROBE = """
import hashlib, json, sys
import pyarrow as pa
from pathlib import Path
from senet_zoo.validation.sources import parquet
path = Path(sys.argv[1])
names, entries, labels = parquet.scan_files([path])
order = names if sys.argv[2] == "forward" else names[::-1]
reader = parquet.ParquetReader([path], [entries[n] for n in order], order)
got = {n: hashlib.sha256(reader.read(i)).hexdigest() for i, n in enumerate(order)}
print(json.dumps({"max_memory": pa.default_memory_pool().max_memory(), "got": got}))
"""


@pytest.fixture(scope="module")
def one_row_group(tmp_path_factory):
    """A parquet file of one 60 MB row group, in pages of 8 rows (1.6 MB) as a writer with a page size limit
    makes them (pyarrow's own default puts up to 1024 rows in a page: see docs/benchmarks.md)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    rows = [{"bytes": rng.bytes(200_000), "path": f"ILSVRC2012_val_{i:08d}.JPEG"} for i in range(1, 301)]
    path = tmp_path_factory.mktemp("pq") / "validation-00000-of-00001.parquet"
    table = pa.table({"image": pa.array(rows, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array([i % 1000 for i in range(300)], pa.int64())})
    pq.write_table(table, path, row_group_size=300, write_batch_size=8)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    return path, {r["path"]: hashlib.sha256(r["bytes"]).hexdigest() for r in rows}


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_a_parquet_file_of_one_row_group_is_read_in_a_bounded_window(one_row_group, order):
    path, expected = one_row_group
    r = subprocess.run([sys.executable, "-c", WINDOW_PROBE, str(path), order], capture_output=True, text=True,
                       check=True)
    result = json.loads(r.stdout)
    assert result["got"] == expected
    # two windows of 8 MiB kept, one being built (arrow's builders double), a page or two: ~42 MB, not the
    # 60 MB row group (read whole, it costs 120 MB and more)
    assert result["max_memory"] < 48 << 20, result["max_memory"] >> 20


# --- what the fuzzer found: members tar -x and tarfile extract differently --------------------------------------


def _raw_tar(path: Path, *members: bytes) -> Path:
    path.write_bytes(b"".join(members) + bytes(1024))
    return path


@pytest.mark.parametrize("how, message", [
    ("pax records past the declared size", "a pax header whose records do not fill its declared size"),
    ("two pax headers", "2 pax extended headers for one member"),
    ("GNU long name and pax path", "both a GNU long name and a pax path"),
    ("sparse without GNU magic", "a GNU sparse header without GNU tar's magic"),
    ("sparse map short of the data", "a sparse map of 512 bytes for 1,024 bytes of stored data"),
    ("sparse chunks not whole blocks", "a sparse map with chunks that are not whole 512-byte blocks"),
    ("a symbolic link replaced", "member n01440764/b.JPEG replaces a symbolic link of the same name"),
    ("a file named like a directory", "member n01440764/b.JPEG/: a file named like a directory"),
    ("a link with data", "member n01440764/b.JPEG: a link with 5 bytes of data"),
])
def test_members_that_tar_x_and_tarfile_extract_differently_are_refused(tmp_path, how, message):
    from support.fuzz_archives import _fix_checksum, _gnu_sparse, _pax_block, _raw_member

    a = _raw_member(f"{W1}/a.JPEG", b"a" * 100)
    b = f"{W1}/b.JPEG"
    if how == "pax records past the declared size":   # tarfile parses the whole block, GNU tar the declared byte
        pax = bytearray(_pax_block([("path", b)]))
        pax[124:136] = b"%011o\0" % 1
        _fix_checksum(pax, 0)
        members = [a, bytes(pax), _raw_member(f"{W1}/x.JPEG", b"x")]
    elif how == "two pax headers":                       # tarfile keeps the outer one, GNU tar the inner
        members = [a, _pax_block([("path", b)]), _pax_block([("path", f"{W1}/c.JPEG")]), _raw_member("x.JPEG")]
    elif how == "GNU long name and pax path":
        long = _raw_member("././@LongLink", f"{W1}/{'l' * 120}.JPEG".encode() + b"\0", type=tarfile.GNUTYPE_LONGNAME)
        members = [a, long, _pax_block([("path", b)]), _raw_member("x.JPEG", b"x")]
    elif how == "sparse without GNU magic":
        sparse = bytearray(_gnu_sparse(b, [(0, bytes(512))], 1000))
        sparse[257:265] = b"ustar\x0000"
        _fix_checksum(sparse, 0)
        members = [a, bytes(sparse)]
    elif how == "sparse map short of the data":
        sparse = bytearray(_gnu_sparse(b, [(0, bytes(512)), (600, bytes(512))], 2000))
        sparse[422:434] = b"%011o\0" % 0                # the second chunk's length
        _fix_checksum(sparse, 0)
        members = [a, bytes(sparse)]
    elif how == "sparse chunks not whole blocks":        # GNU tar reads each chunk in whole blocks
        members = [a, _gnu_sparse(b, [(0, b"x" * 100), (2000, b"y" * 100)], 3000)]
    elif how == "a symbolic link replaced":              # GNU tar may put its delayed link back over the file
        members = [a, _raw_member(b, type=tarfile.SYMTYPE, link="../x/a.JPEG"), _raw_member(b, b"b")]
    elif how == "a file named like a directory":
        members = [a, _raw_member(b, b"b"), _raw_member(b + "/", b"c")]
    else:
        link = bytearray(_raw_member(b, type=tarfile.SYMTYPE, link="a.JPEG"))
        link[124:136] = b"%011o\0" % 5
        _fix_checksum(link, 0)
        members = [a, bytes(link)]
    tar = _raw_tar(tmp_path / "odd.tar", *members)
    with pytest.raises(SenetZooError) as e:
        open_source(tar, tmp_path / "index")
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


@needs_gnu_tar
def test_a_member_of_an_unknown_type_is_a_file_to_tar_but_skipped_by_webdataset(tmp_path):
    from support.fuzz_archives import _raw_member

    tar = _raw_tar(tmp_path / "z.tar", _raw_member(f"{W1}/a.JPEG", b"a"), _raw_member(f"{W1}/z.JPEG", b"z", type=b"Z"))
    got, _ = read_source(tar, tmp_path / "index")
    assert got == extracted(tar, tmp_path / "out") == {f"{W1}/a.JPEG": b"a", f"{W1}/z.JPEG": b"z"}
    shard = _raw_tar(tmp_path / "s.tar", _raw_member("k.cls", b"1"), _raw_member("k.jpg", b"j", type=b"Z"))
    with pytest.raises(SenetZooError, match="member k.jpg is a member of an unknown type: WebDataset readers skip it"):
        open_source(shard, tmp_path / "index")


def test_a_parquet_file_whose_column_chunk_metadata_names_no_column_is_still_read(tmp_path):
    # Found by the fuzzer as "bad image" for every row: a flipped byte in a column chunk's path_in_schema (not
    # used by readers, which go by the schema's order) made sizing the window raise
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"bytes": bytes([i]) * 300, "path": f"ILSVRC2012_val_{i:08d}.JPEG"} for i in range(1, 7)]
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"image": pa.array(rows), "label": pa.array(range(6), pa.int64())}), path)
    raw = bytearray(path.read_bytes())
    at = raw.rindex(b"bytes")
    raw[at + 1] = 0x9F   # the last "bytes": a column chunk's path_in_schema, after the schema's names
    path.write_bytes(bytes(raw))
    with pytest.raises(UnicodeDecodeError):
        pq.ParquetFile(path).metadata.row_group(0).column(0).path_in_schema
    got, _ = read_source(path, tmp_path / "index")
    assert got == {r["path"]: r["bytes"] for r in rows}


@pytest.mark.parametrize("record", [("mtime", "nan"), ("size", "12x"), ("uid", "")])
def test_a_pax_number_that_is_none_is_refused(tmp_path, record):
    # Found by the fuzzer: tarfile reads "mtime=nan" as 0 and extracts the member, GNU tar skips it
    from support.fuzz_archives import _pax_block, _raw_member

    tar = _raw_tar(tmp_path / "nan.tar", _raw_member(f"{W1}/a.JPEG", b"a"), _pax_block([record]),
                   _raw_member(f"{W1}/b.JPEG", b"b"))
    with pytest.raises(SenetZooError, match=f"member {W1}/b.JPEG: a pax {record[0]} of {record[1]!r}"):
        open_source(tar, tmp_path / "index")
