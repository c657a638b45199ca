"""The kept index of a tar's headers, so that later runs start at once, and the checks that keep it honest.

The index is JSON in an index folder (``default_index_dir()``, or ``--cache DIR``'s ``DIR/tar-index``), one file
per tar (named by its absolute path). It is used only when

* the tar's size, mtime, inode and ctime are those it was built from: a tar replaced by another of the same
  size and mtime (``cp -p``, ``rsync -t``, coarse-mtime filesystems) has a new ctime, and a new inode when
  renamed into place;
* and the archive still holds the headers it lists: the header blocks at a sample of the indexed offsets (spread
  over the archive, a few at random, and always the last member) and the end-of-archive block are read again and
  compared (a digest per header). This also catches an index copied along with its tar, or a filesystem whose
  ctime cannot be trusted.

Otherwise the headers are walked again and the index rewritten. A folder where the index cannot be written is
no reason to refuse a valid tar: the run carries on without keeping it, and says so in one note.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

from .... import jsonio
from ....errors import SenetZooError
from ....files import atomic_write_text
from .headers import BLOCK, FILE, HARDLINK, SYMLINK, UNKNOWN, Header, header_digest, walk

INDEX_FORMAT = 2
SPREAD, RANDOM = 24, 8   # headers compared before an index is used, besides the first and the last


def default_index_dir() -> Path:
    """Where tar indexes are kept unless told otherwise (``--cache DIR`` -> ``DIR/tar-index``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "senet-zoo" / "tar-index"


def index_file(path: Path, index_dir: Path) -> Path:
    key = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return index_dir / f"{path.name}.{key}.json"


def tar_headers(path: str | os.PathLike, index_dir: str | os.PathLike | None = None) -> tuple[list[Header], list[str]]:
    """(the tar's members in archive order, notes for the record): from the kept index when it still matches
    the archive, else walked again (and kept)."""
    path = Path(os.path.abspath(path))
    try:
        st = path.stat()
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    stamp = {"format": INDEX_FORMAT, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
             "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}
    where = index_file(path, Path(index_dir) if index_dir is not None else default_index_dir())
    notes = []
    kept = _load(where, stamp)
    if kept is not None:
        headers, end = kept
        differs = _differs(path, headers, end)
        if differs is None:
            return headers, notes
        notes.append(f"{path.name}: its kept index no longer matched the archive ({differs}); its headers were "
                     "read again")
    headers, end = walk(path, st.st_size)
    try:
        atomic_write_text(where, json.dumps({**stamp, "end": end, "members": [h.to_json() for h in headers]},
                                            separators=(",", ":")))
    except (OSError, SenetZooError) as e:  # the index only saves time
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        notes.append(f"tar index not kept ({reason}); the next run reads the tar's headers again")
    return headers, notes


def _load(where: Path, stamp: dict) -> tuple[list[Header], int] | None:
    """The kept index when its stamp is this tar's and its entries are well-formed, else None."""
    try:
        stored = jsonio.load_path(where)
        if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in stamp.items()):
            return None
        headers = [Header.from_json(row) for row in stored["members"]]
        end = stored["end"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (headers, end) if _well_formed(headers, end, stamp["size"]) else None


def _well_formed(headers: list[Header], end: int, size: int) -> bool:
    """Entries an index written by ``tar_headers`` could hold: what a damaged or edited one cannot steer."""
    if type(end) is not int or not 0 <= end <= size - BLOCK:
        return False
    previous = -1
    for h in headers:
        ints = (h.offset, h.data, h.size)
        if any(type(v) is not int for v in ints) or h.kind not in (FILE, UNKNOWN, HARDLINK, SYMLINK):
            return False
        if not isinstance(h.name, str) or not isinstance(h.link, str) or not isinstance(h.digest, str):
            return False
        if h.sparse is not None and not all(len(c) == 2 and all(type(v) is int and v >= 0 for v in c)
                                            for c in h.sparse):
            return False
        if not previous < h.offset < h.data <= end or h.size < 0:
            return False
        if h.kind in (FILE, UNKNOWN) and h.data + h.stored() > end:
            return False
        previous = h.offset
    return True


def _differs(path: Path, headers: list[Header], end: int) -> str | None:
    """What no longer matches between the archive and its kept index, or None: the header blocks at a sample of
    the indexed offsets (spread, random, the first and the last) and the end-of-archive block."""
    n = len(headers)
    picks = {0, n - 1} | {i * (n - 1) // SPREAD for i in range(SPREAD)} if n else set()
    if n > RANDOM + 2:  # the last is always read, whatever the draw
        picks |= set(random.SystemRandom().sample(range(1, n - 1), RANDOM))
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    try:
        for i in sorted(picks):
            h = headers[i]
            if header_digest(os.pread(fd, BLOCK, h.offset)) != h.digest:
                return f"member {h.name} at byte {h.offset:,}"
        if os.pread(fd, BLOCK, end) != bytes(BLOCK):
            return f"no end-of-archive block at byte {end:,}"
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    finally:
        os.close(fd)
    return None
