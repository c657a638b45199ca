"""The members of a tar file, read from its headers once, within bounds.

The standard library's ``tarfile`` does the parsing, so ustar, GNU (long names, old sparse) and pax (long
names, size and path overrides, sparse 0.0/0.1/1.0) mean here exactly what they mean to ``tarfile``. It is
handed the file through :class:`_HeaderReads`, because on a hostile header ``tarfile`` itself has no bound:
a negative (base-256) size sends it back to an earlier header for ever, and an extended header's size is
read whole, negative meaning "to the end of the file". ``tarfile`` only ever reads headers (it seeks over
member data), so any read larger than ``MAX_HEADER_BYTES`` per member, or negative, is a damaged header.

``tarfile`` also stops quietly at a short or damaged header (it treats it like the end), so truncation is
checked here: every member must lie inside the file and the archive must end with its zero block.
"""
from __future__ import annotations

import hashlib
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ....errors import SenetZooError

BLOCK = 512
MAX_HEADER_BYTES = 1 << 20   # all header blocks of one member (pax records, GNU long names, sparse maps)
FILE, HARDLINK, SYMLINK = "file", "hardlink", "symlink"
UNKNOWN = "unknown"   # a type tar does not know: GNU tar and tarfile extract it as a file, webdataset skips it
_TIME, _INT = re.compile(r"-?[0-9]+(\.[0-9]+)?"), re.compile(r"-?[0-9]+")
_PAX_NUMBERS = {"mtime": _TIME, "atime": _TIME, "ctime": _TIME, "size": _INT, "uid": _INT, "gid": _INT}
# GNU volume labels and multi-volume continuations: GNU tar extracts no file for them
_NOT_FILES = (b"V", b"M", b"N")


@dataclass(frozen=True)
class Header:
    """One member, in archive order, as ``tarfile`` reads it."""
    offset: int          # its first header block (pax and GNU extension headers included)
    kind: str            # FILE | UNKNOWN | HARDLINK | SYMLINK
    name: str            # as stored (``tar -x`` normalises it: ``extraction``)
    data: int            # where its data starts
    size: int            # the size of the file it extracts to (a sparse file's whole size)
    link: str = ""       # a link's target
    sparse: tuple | None = None   # a sparse file's ((offset, length), ...), stored one after another at ``data``
    digest: str = ""     # of its first header block: what the kept index is checked with

    def stored(self) -> int:
        """Bytes of data in the archive."""
        return self.size if self.sparse is None else sum(n for _, n in self.sparse)

    def to_json(self) -> list:
        return [self.offset, self.kind, self.name, self.data, self.size, self.link,
                None if self.sparse is None else [list(c) for c in self.sparse], self.digest]

    @classmethod
    def from_json(cls, row: list) -> "Header":
        offset, kind, name, data, size, link, sparse, digest = row
        return cls(offset, kind, name, data, size, link, None if sparse is None else tuple(map(tuple, sparse)), digest)


def header_digest(block: bytes) -> str:
    return hashlib.blake2b(block, digest_size=8).hexdigest()


def sniff(path: Path) -> str | None:
    """'tar', 'compressed', 'parquet' or None, from the first bytes of a file."""
    try:
        with open(path, "rb") as f:
            head = f.read(BLOCK)
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "compressed"
    if len(head) == BLOCK and head[257:262] == b"ustar":
        return "tar"
    if len(head) == BLOCK:  # a pre-POSIX (v7) header: only its checksum says so
        try:
            tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
            return "tar"
        except tarfile.HeaderError:
            return None
    return None


class _Damaged(Exception):
    """A header no tar writer produces; the message says which and where."""


class _HeaderReads:
    """The tar file as ``tarfile`` walks it: reads bounded per member, header blocks kept for their digest."""

    def __init__(self, f):
        self.f = f
        self.spent = 0
        self.blocks: dict[int, bytes] = {}   # what tarfile read for the member, by offset

    def next_member(self) -> None:
        self.spent = 0
        self.blocks = {}

    def read(self, n: int = -1) -> bytes:
        # tarfile reads an extended header's data right after its header block
        where = f"an extended header at byte {max(0, self.f.tell() - BLOCK):,}"
        if n is None or n < 0:
            raise _Damaged(f"{where} has a negative size (tarfile would read to the end of the file)")
        if self.spent + n > MAX_HEADER_BYTES:
            raise _Damaged(f"{where} claims {n:,} bytes (one member's headers need at most "
                           f"{MAX_HEADER_BYTES >> 20} MiB)")
        self.spent += n
        at = self.f.tell()
        data = self.f.read(n)
        self.blocks[at] = data   # within MAX_HEADER_BYTES
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0 and offset < 0:
            raise _Damaged(f"an offset before the start of the file ({offset:,})")
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()


def _is_header(block: bytes) -> bool:
    if len(block) != BLOCK:
        return False
    try:
        return tarfile.nti(block[148:156]) in tarfile.calc_chksums(block)
    except tarfile.HeaderError:
        return False


def _records_fill(data: bytes, size: int) -> bool:
    """Whether pax records ("LENGTH KEY=VALUE\n") fill exactly the declared size, as POSIX and GNU tar read them."""
    data, pos = data[:size], 0
    if len(data) < size:
        return False
    while pos < size:
        digits = data[pos:pos + 20].split(b" ", 1)[0]
        length = int(digits) if digits.isdigit() else 0
        if length < len(digits) + 2 or data[pos + length - 1:pos + length] != b"\n":
            return False
        pos += length
    return pos == size


def _ambiguous(ti: tarfile.TarInfo, blocks: dict[int, bytes]) -> str | None:
    """What makes tarfile and GNU tar read this member differently, if anything: a pax number that is none
    (tarfile makes it 0, GNU tar skips the member), pax records past the header's declared size (tarfile reads
    the whole block), two extended headers of a kind (tarfile lets the outer one
    win), a GNU long name with a pax path (the long name wins in tarfile), an old GNU sparse header without GNU
    tar's magic (GNU tar extracts it as a plain file)."""
    for key, value in ti.pax_headers.items():
        if key in _PAX_NUMBERS and not _PAX_NUMBERS[key].fullmatch(value):
            return f"a pax {key} of {value[:20]!r} (GNU tar skips the member, tarfile reads it as 0)"
    types = [b[156:157] for b in blocks.values() if _is_header(b)]
    for at, b in blocks.items():
        if _is_header(b) and b[156:157] in (tarfile.XHDTYPE, tarfile.XGLTYPE) and not _records_fill(
                blocks.get(at + BLOCK, b""), tarfile.nti(b[124:136])):
            return "a pax header whose records do not fill its declared size (tarfile reads past it)"
    for kind, what in ((tarfile.XHDTYPE, "pax extended headers"), (tarfile.GNUTYPE_LONGNAME, "GNU long names"),
                       (tarfile.GNUTYPE_LONGLINK, "GNU long link names")):
        if types.count(kind) > 1:
            return f"{types.count(kind)} {what} for one member"
    if tarfile.GNUTYPE_LONGNAME in types and "path" in ti.pax_headers:
        return "both a GNU long name and a pax path"
    if tarfile.GNUTYPE_LONGLINK in types and "linkpath" in ti.pax_headers:
        return "both a GNU long link name and a pax link path"
    if ti.type == tarfile.GNUTYPE_SPARSE and not any(
            b[156:157] == tarfile.GNUTYPE_SPARSE and b[257:265] == tarfile.GNU_MAGIC for b in blocks.values()):
        return "a GNU sparse header without GNU tar's magic"
    return None


def _block(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def _kind(ti: tarfile.TarInfo) -> str | None:
    if ti.isreg():
        return FILE
    if ti.islnk():
        return HARDLINK
    if ti.issym():
        return SYMLINK
    if ti.type not in tarfile.SUPPORTED_TYPES and ti.type not in _NOT_FILES:
        return UNKNOWN
    return None      # directories, devices, FIFOs: no image is read from them


def _check_sparse(ti: tarfile.TarInfo) -> tuple | None:
    if ti.sparse is None:
        return None
    chunks = tuple((int(o), int(n)) for o, n in ti.sparse)
    if any(o < 0 or n < 0 for o, n in chunks):
        raise _Damaged(f"member {ti.name}: a sparse map with negative offsets or lengths")
    return chunks


def walk(path: Path, file_size: int) -> tuple[list[Header], int]:
    """(the members that extract to files or links, in archive order; the offset of the end-of-archive block)."""
    kind = sniff(path)
    if kind == "compressed":
        raise SenetZooError(path, "is a compressed tar, which cannot be read in place: decompress it first "
                            "(e.g. gunzip), then pass the .tar")
    if kind != "tar":
        raise SenetZooError(path, "not a tar file")
    members: list[Header] = []
    last = None
    try:
        with open(path, "rb") as raw:
            reads = _HeaderReads(raw)
            with tarfile.open(fileobj=reads, mode="r:", errorlevel=2) as tf:
                for ti in tf:
                    sparse = _check_sparse(ti)
                    if ti.size < 0:
                        raise _Damaged(f"member {ti.name}: a negative size ({ti.size:,} bytes)")
                    ambiguous = _ambiguous(ti, reads.blocks)
                    if ambiguous:
                        raise _Damaged(f"member {ti.name}: {ambiguous}, which tar -x and Python's tarfile read "
                                       "differently")
                    if tf.offset <= ti.offset:
                        raise _Damaged(f"member {ti.name}: the next header at byte {tf.offset:,} does not come "
                                       f"after this one (byte {ti.offset:,})")
                    kind = _kind(ti)
                    stored = ti.size if sparse is None else sum(n for _, n in sparse)
                    if sparse is not None and ti.offset_data + _block(stored) != tf.offset:
                        raise _Damaged(f"member {ti.name}: a sparse map of {stored:,} bytes for "
                                       f"{tf.offset - ti.offset_data:,} bytes of stored data")
                    if kind in (HARDLINK, SYMLINK) and ti.size:
                        raise _Damaged(f"member {ti.name}: a link with {ti.size:,} bytes of data")
                    end = max(tf.offset, ti.offset_data + stored) if kind in (FILE, UNKNOWN) else tf.offset
                    if end > file_size:
                        raise SenetZooError(path, f"truncated: member {ti.name} needs {end:,} bytes, the file has "
                                            f"{file_size:,}")
                    if kind is not None:
                        block = reads.blocks.get(ti.offset, b"")
                        members.append(Header(ti.offset, kind, ti.name, ti.offset_data, ti.size,
                                              ti.linkname if kind != FILE else "", sparse, header_digest(block)))
                    last = ti.name
                    reads.next_member()
                    tf.members = []  # tarfile keeps every TarInfo; the list above is all we need
                end_of_members = tf.offset
    except _Damaged as e:
        raise SenetZooError(path, f"damaged tar header: {e}") from None
    except RecursionError:
        after = f"after member {last}" if last is not None else "at its start"
        raise SenetZooError(path, f"damaged tar header: extended headers chained too deep {after}") from None
    except (tarfile.TarError, ValueError, OverflowError, EOFError) as e:
        raise SenetZooError(path, f"not a readable tar ({e})") from None
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    with open(path, "rb") as f:
        f.seek(end_of_members)
        tail = f.read(BLOCK)
    if len(tail) < BLOCK or tail.strip(b"\0"):
        after = f"after member {last}" if last else "at its start"
        raise SenetZooError(path, f"truncated or damaged {after} (no end-of-archive block at byte "
                            f"{end_of_members:,})")
    return members, end_of_members
