"""Images read in place from tar files: ``ILSVRC2012_img_val.tar`` as distributed, a tar of an ImageFolder tree,
and WebDataset shards (``wds_source.py`` groups their members into samples).

Nothing is extracted. The tar is walked once with the standard library's ``tarfile`` (headers only: it seeks
over member data) to an index of (member name, data offset, size); the index is kept as JSON in an index
folder, keyed by the tar's absolute path, size and mtime, so later runs start at once. Workers then read
members at random with ``os.pread`` on their own file descriptor (opened lazily, once per process).

``tarfile`` stops quietly at a truncated archive (it treats a short header like the end), so truncation is
checked here: every member's data must lie inside the file and the archive must end with its zero block.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from ....errors import SenetZooError
from ....files import atomic_write_text
from ....images.preprocess import BadImage

INDEX_FORMAT = 1
BLOCK = 512


def default_index_dir() -> Path:
    """Where tar indexes are kept unless told otherwise (``--cache DIR`` -> ``DIR/tar-index``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "senet-zoo" / "tar-index"


def sniff(path: Path) -> str | None:
    """'tar', 'gzip', 'parquet' or None, from the first bytes of a file."""
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


def _index_file(path: Path, index_dir: Path) -> Path:
    key = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return index_dir / f"{path.name}.{key}.json"


def tar_members(path: Path, index_dir: Path | None = None) -> list[tuple[str, int, int]]:
    """[(member name, data offset, size)] of the regular files in the tar at ``path``, in archive order."""
    path = Path(os.path.abspath(path))
    try:
        st = path.stat()
    except OSError as e:
        raise SenetZooError(path, f"cannot read it ({e.strerror or e})") from None
    stamp = {"format": INDEX_FORMAT, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    index = _index_file(path, Path(index_dir) if index_dir is not None else default_index_dir())
    try:
        stored = json.loads(index.read_text(encoding="utf-8"))
        if all(stored.get(k) == v for k, v in stamp.items()):
            return [tuple(m) for m in stored["members"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    members = _scan(path, st.st_size)
    try:  # the index only saves time: a folder we cannot write to is no reason to fail
        atomic_write_text(index, json.dumps({**stamp, "members": members}, separators=(",", ":")))
    except OSError:
        pass
    return members


def _scan(path: Path, file_size: int) -> list[tuple[str, int, int]]:
    kind = sniff(path)
    if kind == "compressed":
        raise SenetZooError(path, "is a compressed tar, which cannot be read in place: decompress it first "
                            "(e.g. gunzip), then pass the .tar")
    if kind != "tar":
        raise SenetZooError(path, "not a tar file")
    members: list[tuple[str, int, int]] = []
    last = None
    try:
        with tarfile.open(path, mode="r:", errorlevel=2) as tf:
            for ti in tf:
                end = ti.offset_data + ti.size
                if end > file_size:
                    raise SenetZooError(path, f"truncated: member {ti.name} needs {end:,} bytes, the file has "
                                        f"{file_size:,}")
                if ti.isreg() and not ti.sparse:
                    members.append((ti.name, ti.offset_data, ti.size))
                last = ti.name
            end_of_members = tf.offset
    except tarfile.TarError as e:
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
    return members


class TarReader:
    """Members of one or more tar files: image i is ``size`` bytes at ``offset`` of ``containers[c]``."""

    kind = "tar"

    def __init__(self, containers: list[str], entries: list[tuple[int, str, int, int]], kind: str = "tar"):
        # entries[i] = (container index, member name, offset, size), aligned with the evaluation set's names
        self.containers = [str(c) for c in containers]
        self.entries = list(entries)
        self.kind = kind
        self._mtimes = []
        for c in self.containers:
            try:
                self._mtimes.append(os.stat(c).st_mtime_ns)
            except OSError:
                self._mtimes.append(-1)
        self._pid, self._fds = None, {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pid"], state["_fds"] = None, {}  # descriptors never cross processes
        return state

    def __len__(self) -> int:
        return len(self.entries)

    def _fd(self, c: int) -> int:
        if self._pid != os.getpid():  # a forked worker: open its own descriptors
            self._pid, self._fds = os.getpid(), {}
        fd = self._fds.get(c)
        if fd is None:
            fd = self._fds[c] = os.open(self.containers[c], os.O_RDONLY)
        return fd

    def read(self, i: int) -> bytes:
        c, name, offset, size = self.entries[i]
        try:
            data = os.pread(self._fd(c), size, offset)
        except OSError as e:
            raise BadImage(f"cannot read {self.where(i)} ({e.strerror or e})") from None
        if len(data) != size:
            raise BadImage(f"{self.where(i)}: truncated ({len(data)} of {size} bytes)")
        return data

    def identity(self) -> list[tuple[str, int, int]]:
        """(member, size, the container's mtime_ns) per image."""
        return [(f"{os.path.basename(self.containers[c])}:{name}", size, self._mtimes[c] ^ offset)
                for c, name, offset, size in self.entries]

    def members(self) -> list[str]:
        """Where each image is, independent of the machine (what the record's member-list hash covers)."""
        return [f"{os.path.basename(self.containers[c])}:{name}\t{size}" for c, name, _, size in self.entries]

    def where(self, i: int) -> str:
        c, name, _, _ = self.entries[i]
        return f"{self.containers[c]}:{name}"

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
