"""A tar's members as ``sources.tar.headers`` walks them: archives written by Python's ``tarfile`` (GNU, pax) or
block by block by hand, with every offset, name and message a literal worked out from the tar format (512-byte
blocks: a header, then the data padded to a block), and the digest recomputed from the file's own bytes.

In-process and fast: no GNU tar, no source or index.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.validation.sources.tar.headers import MAX_HEADER_BYTES, Header, header_digest, sniff, walk
from support.fuzz_archives import pax_records

MTIME = 1_500_000_000


def add(tf: tarfile.TarFile, name: str, payload: bytes | None = None, type=tarfile.REGTYPE, link: str = "",
        pax: dict | None = None) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = type, link, MTIME
    if pax:
        ti.pax_headers = pax
    if payload is not None:
        ti.size = len(payload)
    tf.addfile(ti, io.BytesIO(payload) if payload is not None else None)


def block(name: str, payload: bytes = b"", type=tarfile.REGTYPE, link: str = "", size: int | None = None,
          fmt=tarfile.GNU_FORMAT) -> bytes:
    """One member as a tar writer lays it out: its header block(s), then its data padded to whole blocks."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime, ti.size = type, link, MTIME, len(payload) if size is None else size
    return ti.tobuf(fmt, "utf-8", "surrogateescape") + payload + bytes(-len(payload) % 512)


def pax(records: list[tuple[str, str]], declared: int | None = None, type=tarfile.XHDTYPE) -> bytes:
    """A pax extended header ('x', or 'g') with ``records`` written by hand; ``declared``: the size its header
    states, if not the records' own."""
    head = bytearray(block("././@PaxHeader", pax_records(records), type=type, fmt=tarfile.USTAR_FORMAT))
    if declared is not None:
        head[124:136] = b"%011o\0" % declared
        fix_checksum(head)
    return bytes(head)


def fix_checksum(raw: bytearray, at: int = 0) -> None:
    raw[at + 148:at + 156] = b" " * 8
    raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])


def write(path: Path, *members: bytes, end: bytes = bytes(1024)) -> Path:
    path.write_bytes(b"".join(members) + end)
    return path


def walked(path: Path):
    return walk(path, path.stat().st_size)


def refused(path: Path) -> str:
    with pytest.raises(SenetZooError) as e:
        walked(path)
    return str(e.value)


def damaged(path: Path, member: str, what: str) -> str:
    return f"{path}: damaged tar header: member {member}: {what}, which tar -x and Python's tarfile read differently"


def digest_at(path: Path, offset: int) -> str:
    return hashlib.blake2b(path.read_bytes()[offset:offset + 512], digest_size=8).hexdigest()


# --- what a tar holds -----------------------------------------------------------------------------------------


def test_files_links_and_unknown_types_are_listed_in_archive_order_and_nothing_else(tmp_path):
    tar = tmp_path / "g.tar"
    long = "d/" + "l" * 120 + ".JPEG"
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as tf:
        add(tf, "d/a.JPEG", b"a" * 700)                           # 0: header, data 512..1212, next at 1536
        add(tf, "d", type=tarfile.DIRTYPE)                        # 1536
        add(tf, "d/h.JPEG", type=tarfile.LNKTYPE, link="d/a.JPEG")  # 2048
        add(tf, "d/s.JPEG", type=tarfile.SYMTYPE, link="a.JPEG")    # 2560
        add(tf, "fifo", type=tarfile.FIFOTYPE)                    # 3072
        add(tf, long, b"L" * 3)                                   # 3584: long-name header, its name, the header
        add(tf, "vol", type=b"V")                                 # 5632: GNU volume label
        add(tf, "multi", b"m", type=b"M")                         # 6144: multi-volume continuation
        add(tf, "names", b"n", type=b"N")                         # 7168: old GNU names
        add(tf, "z.JPEG", b"zz", type=b"Z")                       # 8192: unknown: tar extracts a file
        add(tf, "c", type=tarfile.CHRTYPE)                        # 9216
    members, end = walked(tar)
    assert members == [
        Header(0, "file", "d/a.JPEG", 512, 700, "", None, digest_at(tar, 0)),
        Header(2048, "hardlink", "d/h.JPEG", 2560, 0, "d/a.JPEG", None, digest_at(tar, 2048)),
        Header(2560, "symlink", "d/s.JPEG", 3072, 0, "a.JPEG", None, digest_at(tar, 2560)),
        Header(3584, "file", long, 5120, 3, "", None, digest_at(tar, 3584)),
        Header(8192, "unknown", "z.JPEG", 8704, 2, "", None, digest_at(tar, 8192)),
    ]
    assert end == 9728
    assert members[1].digest != members[2].digest != ""


def test_a_pax_member_starts_at_its_extended_header(tmp_path):
    tar = write(tmp_path / "p.tar", block("a.JPEG", b"a"), pax([("path", "b.JPEG"), ("mtime", "1.5")]),
                block("x", b"bb"), pax([("linkpath", "b.JPEG")]), block("l.JPEG", type=tarfile.SYMTYPE, link="x"))
    # a.JPEG: 0, data 512; pax 1024, records 1536, b.JPEG's header 2048, data 2560; pax 3072, records 3584,
    # l.JPEG's header 4096, no data: the end block at 4608
    members, end = walked(tar)
    assert members == [
        Header(0, "file", "a.JPEG", 512, 1, "", None, digest_at(tar, 0)),
        Header(1024, "file", "b.JPEG", 2560, 2, "", None, digest_at(tar, 1024)),
        Header(3072, "symlink", "l.JPEG", 4608, 0, "b.JPEG", None, digest_at(tar, 3072)),
    ]
    assert end == 4608


def test_an_old_gnu_sparse_member_lists_its_map_and_whole_size(tmp_path):
    chunk = b"s" * 512
    head = bytearray(block("s.JPEG", chunk + b"t" * 100))
    head[156:157] = b"S"
    head[386:410] = b"%011o\0%011o\0" % (1024, 512)
    head[410:434] = b"%011o\0%011o\0" % (4096, 100)
    head[483:495] = b"%011o\0" % 5000
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    members, end = walked(tar)
    # tarfile keeps the header's four slots, the unused ones as (0, 0)
    assert members[1] == Header(1024, "file", "s.JPEG", 1536, 5000, "", ((1024, 512), (4096, 100), (0, 0), (0, 0)),
                                digest_at(tar, 1024))
    assert members[1].stored() == 612 and members[0].stored() == 1 and end == 1536 + 1024


def test_a_header_round_trips_through_its_json_row():
    h = Header(1024, "file", "s.JPEG", 1536, 5000, "", ((1024, 512), (4096, 100)), "00ff")
    row = json.loads(json.dumps(h.to_json()))
    assert row == [1024, "file", "s.JPEG", 1536, 5000, "", [[1024, 512], [4096, 100]], "00ff"]
    assert Header.from_json(row) == h
    link = Header(0, "symlink", "l", 512, 0, "a", None, "ab")
    assert link.to_json() == [0, "symlink", "l", 512, 0, "a", None, "ab"]
    assert Header.from_json(link.to_json()) == link and Header.from_json(link.to_json()).sparse is None


def test_the_digest_of_a_header_block_is_eight_bytes_of_blake2b():
    assert header_digest(bytes(512)) == hashlib.blake2b(bytes(512), digest_size=8).hexdigest()
    assert len(header_digest(b"x")) == 16 and header_digest(b"x") != header_digest(b"y")


# --- what a file is, from its first bytes ---------------------------------------------------------------------


def _v7(name: str = "a.JPEG") -> bytes:
    """A pre-POSIX header: a ustar one with the magic and what follows it blanked, checksum fixed."""
    head = bytearray(block(name, b"v"))
    head[257:512] = bytes(255)
    fix_checksum(head)
    return bytes(head)


@pytest.mark.parametrize("start, kind", [
    (b"PAR1" + bytes(600), "parquet"),
    (gzip.compress(b"x" * 600), "compressed"),
    (b"BZh91AY&SY" + bytes(10), "compressed"),
    (b"\xfd7zXZ\x00" + bytes(10), "compressed"),
    (block("a.JPEG", b"a") + bytes(1024), "tar"),
    (_v7() + bytes(1024), "tar"),
    (_v7()[:512], "tar"),
    (_v7("\udcff.JPEG"), "tar"),                  # a name that is no UTF-8 (byte 0xff)
    (block("a.JPEG", b"a")[:511], None),        # a ustar magic, but less than a block
    (bytes(100) + b"ustar" + bytes(200), None),  # the magic at the wrong place
    (b"\x1f" + bytes(600), None),
    (bytes(2048), None),
    (b"", None),
])
def test_what_a_file_is_from_its_first_bytes(tmp_path, start, kind):
    path = tmp_path / "f"
    path.write_bytes(start)
    assert sniff(path) == kind


def test_a_v7_header_with_a_wrong_checksum_is_no_tar(tmp_path):
    head = bytearray(_v7())
    head[0:1] = b"b"
    path = tmp_path / "f"
    path.write_bytes(bytes(head))
    assert sniff(path) is None


def test_a_file_that_cannot_be_read_is_told_in_one_line(tmp_path):
    with pytest.raises(SenetZooError) as e:
        sniff(tmp_path)
    assert str(e.value) == f"{tmp_path}: cannot read it (Is a directory)"


def test_a_compressed_tar_or_a_file_that_is_no_tar_is_refused(tmp_path):
    gz = tmp_path / "v.tar.gz"
    gz.write_bytes(gzip.compress(block("a.JPEG", b"a") + bytes(1024)))
    assert refused(gz) == (f"{gz}: is a compressed tar, which cannot be read in place: decompress it first (e.g. "
                           "gunzip), then pass the .tar")
    other = tmp_path / "x.tar"
    other.write_bytes(bytes(4096))
    assert refused(other) == f"{other}: not a tar file"
    pq = tmp_path / "p.tar"
    pq.write_bytes(b"PAR1" + bytes(4096))
    assert refused(pq) == f"{pq}: not a tar file"


def test_a_v7_tar_is_walked(tmp_path):
    tar = write(tmp_path / "v7.tar", _v7("a.JPEG"))
    assert walked(tar) == ([Header(0, "file", "a.JPEG", 512, 1, "", None, digest_at(tar, 0))], 1024)


# --- truncation and the end of the archive ----------------------------------------------------------------------


def test_a_member_cut_short_is_refused_with_what_it_needs(tmp_path):
    whole = block("a.JPEG", b"a" * 700) + block("b.JPEG", b"b" * 10)
    tar = tmp_path / "cut.tar"
    tar.write_bytes(whole[:1300])
    assert refused(tar) == f"{tar}: truncated: member a.JPEG needs 1,536 bytes, the file has 1,300"
    link = tmp_path / "link.tar"
    link.write_bytes(block("l.JPEG", type=tarfile.SYMTYPE, link="a")[:512] + b"\0" * 100)
    assert refused(link) == f"{link}: truncated or damaged after member l.JPEG (no end-of-archive block at byte 512)"


def test_an_archive_without_its_end_block_is_refused(tmp_path):
    exact = write(tmp_path / "exact.tar", block("a.JPEG", b"a" * 700), end=b"")
    assert refused(exact) == (f"{exact}: truncated or damaged after member a.JPEG (no end-of-archive block at byte "
                              "1,536)")
    short = write(tmp_path / "short.tar", block("a.JPEG", b"a" * 700), end=bytes(511))
    assert refused(short) == (f"{short}: truncated or damaged after member a.JPEG (no end-of-archive block at byte "
                              "1,536)")
    garbage = write(tmp_path / "garbage.tar", block("a.JPEG", b"a" * 700), end=b"\0" * 511 + b"x")
    assert refused(garbage).endswith("after member a.JPEG (no end-of-archive block at byte 1,536)")
    one = write(tmp_path / "one.tar", block("a.JPEG", b"a" * 700), end=bytes(512))
    assert walked(one) == ([Header(0, "file", "a.JPEG", 512, 700, "", None, digest_at(one, 0))], 1536)


def test_a_first_header_with_a_wrong_checksum_is_not_a_readable_tar(tmp_path):
    head = bytearray(block("a.JPEG", b"abc"))
    head[148:156] = b"0000000\0"
    tar = write(tmp_path / "bad.tar", bytes(head))
    assert refused(tar) == f"{tar}: not a readable tar (bad checksum)"


# --- headers tar -x and tarfile read differently ------------------------------------------------------------------


def test_a_link_with_data_is_refused(tmp_path):
    link = bytearray(block("l.JPEG", type=tarfile.SYMTYPE, link="a.JPEG"))
    link[124:136] = b"%011o\0" % 5
    fix_checksum(link)
    tar = write(tmp_path / "l.tar", block("a.JPEG", b"a"), bytes(link) + bytes(512))
    assert refused(tar) == f"{tar}: damaged tar header: member l.JPEG: a link with 5 bytes of data"
    hard = bytearray(block("h.JPEG", type=tarfile.LNKTYPE, link="a.JPEG"))
    hard[124:136] = b"%011o\0" % 1
    fix_checksum(hard)
    tar = write(tmp_path / "h.tar", block("a.JPEG", b"a"), bytes(hard) + bytes(512))
    assert refused(tar) == f"{tar}: damaged tar header: member h.JPEG: a link with 1 bytes of data"


@pytest.mark.parametrize("key, value", [("mtime", "1e5"), ("atime", "1.5.2"), ("ctime", ".5"), ("size", "1.0"),
                                        ("uid", "0x10"), ("gid", " 7"), ("mtime", "1" * 25 + "z")])
def test_a_pax_number_tar_x_does_not_read_is_refused(tmp_path, key, value):
    tar = write(tmp_path / "n.tar", block("a.JPEG", b"a"), pax([(key, value)]), block("b.JPEG", b"b"))
    assert refused(tar) == damaged(tar, "b.JPEG", f"a pax {key} of {value[:20]!r} (GNU tar skips the member, "
                                                  "tarfile reads it as 0)")


@pytest.mark.parametrize("key, value", [("mtime", "-12.25"), ("atime", "7"), ("ctime", "-3"), ("size", "1"),
                                        ("uid", "-1"), ("gid", "42"), ("comment", "not a number")])
def test_pax_numbers_tar_x_reads_are_accepted(tmp_path, key, value):
    tar = write(tmp_path / "n.tar", block("a.JPEG", b"a"), pax([(key, value)]), block("b.JPEG", b"b"))
    members, _ = walked(tar)
    assert [m.name for m in members] == ["a.JPEG", "b.JPEG"] and members[1].offset == 1024


@pytest.mark.parametrize("declared, ok", [("all", True), ("first", True), (-10, False), (1, False), (10, False)])
def test_pax_records_must_fill_the_declared_size_exactly(tmp_path, declared, ok):
    records = [("path", "b.JPEG"), ("comment", "c" * 30)]
    body = pax(records)[512:].rstrip(b"\0")
    assert len(body) == 15 + 42
    # GNU tar reads the declared bytes only: ending after the first record leaves a harmless comment unread
    length = {"all": 57, "first": 15}.get(declared) or 57 + declared
    tar = write(tmp_path / "r.tar", block("a.JPEG", b"a"), pax(records, declared=length), block("x", b"x"))
    if ok:
        assert [m.name for m in walked(tar)[0]] == ["a.JPEG", "b.JPEG"]
    else:
        assert refused(tar) == damaged(tar, "b.JPEG", "a pax header whose records do not fill its declared size "
                                                      "(tarfile reads past it)")


def test_pax_records_with_a_bad_length_are_refused(tmp_path):
    for body in (b"99 path=b.JPEG\n", b"5 path=b.JPEG\n", b"x path=b.JPEG\n", b"15 path=b.JPEG!", b"1 path=b\n",
                 b"15 path=b.JPEG\n\0"):
        tar = write(tmp_path / "r.tar", block("a.JPEG", b"a"), _pax_raw(body), block("x", b"x"))
        assert "a pax header whose records do not fill its declared size (tarfile reads past it)" in refused(tar)


def _long(kind: bytes, text: str) -> bytes:
    return block("././@LongLink", text.encode() + b"\0", type=kind)


@pytest.mark.parametrize("members, what", [
    ((pax([("path", "b.JPEG")]), pax([("path", "c.JPEG")])), "2 pax extended headers for one member"),
    ((_long(b"L", "b" * 120), _long(b"L", "c" * 120)), "2 GNU long names for one member"),
    ((_long(b"K", "b" * 120), _long(b"K", "c" * 120)), "2 GNU long link names for one member"),
    ((_long(b"L", "b" * 120), pax([("path", "c.JPEG")])), "both a GNU long name and a pax path"),
    ((_long(b"K", "b" * 120), pax([("linkpath", "c.JPEG")])), "both a GNU long link name and a pax link path"),
])
def test_extended_headers_tar_x_and_tarfile_resolve_differently_are_refused(tmp_path, members, what):
    tar = write(tmp_path / "e.tar", block("a.JPEG", b"a"), *members, block("x", type=tarfile.SYMTYPE, link="a"))
    message = refused(tar)
    assert message.startswith(f"{tar}: damaged tar header: member ") and message.endswith(
        f": {what}, which tar -x and Python's tarfile read differently")


@pytest.mark.parametrize("members", [
    (pax([("path", "b.JPEG")]), _long(b"K", "k" * 120)),
    (_long(b"L", "b" * 120), _long(b"K", "k" * 120)),
    (_long(b"L", "b" * 120), pax([("linkpath", "k" * 120)])),
    (pax([("linkpath", "k" * 120)]), _long(b"L", "b" * 120), ),
    (pax([]), _long(b"L", "b" * 120)),       # a pax header of no records: tarfile reads 0 bytes for it
])
def test_one_extended_header_of_each_kind_is_read(tmp_path, members):
    tar = write(tmp_path / "e.tar", block("a.JPEG", b"a"), *members, block("x", type=tarfile.SYMTYPE, link="a"))
    got = walked(tar)[0][1]
    assert got.kind == "symlink" and got.offset == 1024 and got.name in ("b.JPEG", "b" * 120)
    assert got.link in ("a", "k" * 120)


def test_a_global_header_and_a_pax_header_make_one_member_from_the_pax_header_on(tmp_path):
    tar = write(tmp_path / "g.tar", block("a.JPEG", b"a"), pax([("comment", "c")], type=tarfile.XGLTYPE),
                pax([("path", "b.JPEG")]), block("x", type=tarfile.SYMTYPE, link="a"))
    assert walked(tar) == ([Header(0, "file", "a.JPEG", 512, 1, "", None, digest_at(tar, 0)),
                            Header(2048, "symlink", "b.JPEG", 3584, 0, "a", None, digest_at(tar, 2048))], 3584)
    short = write(tmp_path / "s.tar", block("a.JPEG", b"a"), pax([("comment", "c")], declared=3, type=tarfile.XGLTYPE),
                  block("x", type=tarfile.SYMTYPE, link="a"))
    assert refused(short) == damaged(short, "x", "a pax header whose records do not fill its declared size "
                                                 "(tarfile reads past it)")


def test_an_old_gnu_sparse_header_without_gnu_magic_is_refused(tmp_path):
    head = bytearray(block("s.JPEG", b"s" * 512))
    head[156:157] = b"S"
    head[386:410] = b"%011o\0%011o\0" % (1024, 512)
    head[483:495] = b"%011o\0" % 2000
    head[257:265] = b"ustar\x0000"
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    assert refused(tar) == damaged(tar, "s.JPEG", "a GNU sparse header without GNU tar's magic")


@pytest.mark.parametrize("field", [386, 398])
def test_a_sparse_map_with_a_negative_offset_or_length_is_refused(tmp_path, field):
    head = bytearray(block("s.JPEG", b"s" * 1024))
    head[156:157] = b"S"
    head[386:410] = b"%011o\0%011o\0" % (1024, 1024)
    head[field:field + 12] = b"\xff" + (256 ** 11 - 512).to_bytes(11, "big")
    head[483:495] = b"%011o\0" % 4000
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    assert refused(tar) == (f"{tar}: damaged tar header: member s.JPEG: a sparse map with negative offsets or "
                            "lengths")


def test_a_sparse_map_that_does_not_cover_the_stored_data_is_refused(tmp_path):
    head = bytearray(block("s.JPEG", b"s" * 1024))
    head[156:157] = b"S"
    head[386:410] = b"%011o\0%011o\0" % (0, 256)
    head[410:434] = b"%011o\0%011o\0" % (1000, 256)
    head[483:495] = b"%011o\0" % 4000
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    assert refused(tar) == (f"{tar}: damaged tar header: member s.JPEG: a sparse map of 512 bytes for 1,024 bytes "
                            "of stored data")
    head[422:434] = b"%011o\0" % 257   # 513 bytes: stored in the same two blocks, accepted
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    assert walked(tar)[0][1].sparse == ((0, 256), (1000, 257), (0, 0), (0, 0))


# --- bounds on what tarfile reads ------------------------------------------------------------------------------


def _big_pax(data: int) -> bytes:
    """A pax header whose records take ``data`` bytes (a whole number of blocks)."""
    body = f"{data} comment={'c' * (data - len(str(data)) - 10)}\n".encode()
    assert len(body) == data
    return _pax_raw(body)


def _pax_raw(body: bytes) -> bytes:
    return block("././@PaxHeader", body, type=tarfile.XHDTYPE, fmt=tarfile.USTAR_FORMAT)


def test_one_members_headers_may_take_one_mib_and_no_more(tmp_path):
    assert MAX_HEADER_BYTES == 1 << 20
    # tarfile reads the pax header block, its records, the member's own header block, and the byte before
    # the header (its check that the previous member's data is there): 1 MiB - 511 bytes fit...
    fits = write(tmp_path / "fits.tar", block("a.JPEG", b"a"), _big_pax(MAX_HEADER_BYTES - 1536), block("b", b"b"))
    assert [m.name for m in walked(fits)[0]] == ["a.JPEG", "b"]
    # ... 1 MiB + 1 do not: the member's own header block is the read refused
    over = write(tmp_path / "over.tar", block("a.JPEG", b"a"), _big_pax(MAX_HEADER_BYTES - 1024), block("b", b"b"))
    assert refused(over) == (f"{over}: damaged tar header: an extended header at byte 1,048,576 claims 512 bytes "
                             "(one member's headers need at most 1 MiB)")


def test_the_first_members_headers_may_take_exactly_one_mib(tmp_path):
    # the first member has no byte before it to check: its pax header block, records and own header block are
    # all that is read for it
    fits = write(tmp_path / "fits.tar", _big_pax(MAX_HEADER_BYTES - 1024), block("b", b"b"))
    assert [m.name for m in walked(fits)[0]] == ["b"]
    over = write(tmp_path / "over.tar", _big_pax(MAX_HEADER_BYTES - 512), block("b", b"b"))
    assert refused(over) == (f"{over}: damaged tar header: an extended header at byte 1,048,064 claims 512 bytes "
                             "(one member's headers need at most 1 MiB)")


def test_a_first_extended_header_with_a_negative_size_is_refused_at_byte_0(tmp_path):
    long = bytearray(_long(b"L", "x" * 600))
    long[124:136] = b"\xff" + (256 ** 11 - 512).to_bytes(11, "big")   # -512, base-256
    fix_checksum(long)
    tar = write(tmp_path / "neg.tar", bytes(long), block("a", b"a"))
    assert refused(tar) == (f"{tar}: damaged tar header: an extended header at byte 0 has a negative size (tarfile "
                            "would read to the end of the file)")


@pytest.mark.parametrize("n", [512, 1024])
def test_pax_records_that_look_like_a_header_block_are_records(tmp_path, n):
    # records of a whole block or two, 'x' at the type byte's place and no octal checksum: no second pax header
    body = f"{n} comment={'x' * (n - len(str(n)) - 10)}\n".encode()
    tar = write(tmp_path / "x.tar", block("a.JPEG", b"a"), _pax_raw(body), block("b", b"b"))
    assert walked(tar)[0][1] == Header(1024, "file", "b", 1536 + n + 512, 1, "", None, digest_at(tar, 1024))


def test_a_pax_record_whose_length_is_not_followed_by_a_space_is_refused(tmp_path):
    tar = write(tmp_path / "t.tar", block("a.JPEG", b"a"), _pax_raw(b"15\tpath=b.JPEG\n"), block("b", b"b"))
    assert refused(tar) == damaged(tar, "b", "a pax header whose records do not fill its declared size (tarfile "
                                             "reads past it)")


def _high_pax(records: list[tuple[str, str]]) -> bytes:
    """A pax header whose name and link name fields are 0xff bytes: its checksum needs all six octal digits."""
    head = bytearray(pax(records))
    head[0:100] = b"\xff" * 100
    head[157:257] = b"\xff" * 100
    fix_checksum(head)
    assert int(head[148:154], 8) >= 0o100000
    return bytes(head)


def test_extended_headers_with_a_large_checksum_are_still_headers(tmp_path):
    tar = write(tmp_path / "e.tar", block("a.JPEG", b"a"), _high_pax([("path", "b.JPEG")]),
                _high_pax([("path", "c.JPEG")]), block("x", b"x"))
    assert refused(tar).endswith(": 2 pax extended headers for one member, which tar -x and Python's tarfile read "
                                 "differently")


@pytest.mark.parametrize("field", ["twelve digits", "base-256"])
def test_a_pax_size_written_without_a_nul_or_in_base_256_is_read_as_tar_does(tmp_path, field):
    # both encodings are valid (POSIX: 12 octal digits may fill the field; GNU: base-256): 28 bytes of records
    head = bytearray(pax([("path", "b.JPEG"), ("comment", "c")]))
    assert head[512:].rstrip(b"\0") == b"15 path=b.JPEG\n13 comment=c\n"
    head[124:136] = b"000000000034" if field == "twelve digits" else b"\x80" + (28).to_bytes(11, "big")
    fix_checksum(head)
    tar = write(tmp_path / "ok.tar", block("a.JPEG", b"a"), bytes(head), block("x", b"x"))
    assert [m.name for m in walked(tar)[0]] == ["a.JPEG", "b.JPEG"]
    # 20 bytes declared: the second record runs past them
    head[124:136] = b"000000000024" if field == "twelve digits" else b"\x80" + (20).to_bytes(11, "big")
    fix_checksum(head)
    short = write(tmp_path / "short.tar", block("a.JPEG", b"a"), bytes(head), block("x", b"x"))
    assert refused(short) == damaged(short, "b.JPEG", "a pax header whose records do not fill its declared size "
                                                      "(tarfile reads past it)")


def _negative(n: int) -> bytes:
    return b"\xff" + (256 ** 11 - n).to_bytes(11, "big")


def test_a_negative_size_is_refused(tmp_path):
    head = bytearray(block("b.JPEG", b"b" * 600))
    head[124:136] = _negative(1024)
    fix_checksum(head)
    tar = write(tmp_path / "n.tar", block("a.JPEG", b"a"), bytes(head))
    assert refused(tar) == f"{tar}: damaged tar header: member b.JPEG: a negative size (-1,024 bytes)"


def test_a_sparse_member_whose_next_header_is_its_own_is_refused(tmp_path):
    # the stored size (-512) takes the next header back onto this one; the whole size stays positive
    head = bytearray(block("s.JPEG", b"s" * 512))
    head[156:157] = b"S"
    head[124:136] = _negative(512)
    head[386:410] = b"%011o\0%011o\0" % (0, 512)
    head[483:495] = b"%011o\0" % 5000
    fix_checksum(head)
    tar = write(tmp_path / "s.tar", block("a.JPEG", b"a"), bytes(head))
    assert refused(tar) == (f"{tar}: damaged tar header: member s.JPEG: the next header at byte 1,024 does not come "
                            "after this one (byte 1,024)")


def test_extended_headers_chained_too_deep_at_the_start_are_refused_in_one_line(tmp_path):
    tar = write(tmp_path / "chain.tar", pax([("comment", "x")]) * 3000, block("a", b"a"))
    assert refused(tar) == f"{tar}: damaged tar header: extended headers chained too deep at its start"


def test_a_regular_file_has_no_link_whatever_its_link_field_holds(tmp_path):
    tar = write(tmp_path / "f.tar", block("a.JPEG", b"a", link="stale"))
    assert walked(tar)[0][0].link == "" and walked(tar)[0][0].kind == "file"


def test_what_follows_the_end_of_archive_block_is_not_read(tmp_path):
    tar = write(tmp_path / "t.tar", block("a.JPEG", b"a"), end=bytes(1024) + b"trailing junk")
    assert walked(tar) == ([Header(0, "file", "a.JPEG", 512, 1, "", None, digest_at(tar, 0))], 1024)
    xs = write(tmp_path / "x.tar", block("a.JPEG", b"a"), end=b"X" * 512 + bytes(512))
    assert refused(xs) == f"{xs}: truncated or damaged after member a.JPEG (no end-of-archive block at byte 1,024)"


def test_an_input_output_error_while_reading_headers_is_told_in_one_line(tmp_path, monkeypatch):
    from senet_zoo.validation.sources.tar import headers

    def failing(*args, **kwargs):
        raise OSError(5, "Input/output error")

    tar = write(tmp_path / "io.tar", block("a.JPEG", b"a"))
    monkeypatch.setattr(headers.tarfile, "open", failing)
    assert refused(tar) == f"{tar}: cannot read it (Input/output error)"
