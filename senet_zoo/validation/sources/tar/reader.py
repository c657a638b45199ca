"""Reading members of tar files in place: DataLoader workers read each image with ``os.pread`` on a descriptor
of their own (opened lazily, once per process); a sparse member is put together as extraction writes it."""
from __future__ import annotations

import os

from ....images.preprocess import BadImage


class ShortRead(Exception):
    """The archive holds fewer bytes than its header said (it changed, or was cut, after it was indexed)."""


def member_bytes(fd: int, data: int, size: int, sparse: tuple | None = None) -> bytes:
    """The bytes a member extracts to: ``size`` bytes at ``data``, or a sparse member's chunks (stored one after
    another from ``data``) written at their offsets of a zero-filled file, in order, as ``tar -x`` writes them."""
    if sparse is None:
        out = os.pread(fd, size, data)
        if len(out) != size:
            raise ShortRead(f"{len(out):,} of {size:,} bytes")
        return out
    stored = sum(n for _, n in sparse)
    raw = os.pread(fd, stored, data)
    if len(raw) != stored:
        raise ShortRead(f"{len(raw):,} of {stored:,} bytes of a sparse file")
    out = bytearray(size)
    pos = 0
    for offset, n in sparse:
        out[offset:offset + n] = raw[pos:pos + n]
        pos += n
    return bytes(out)


class TarReader:
    """Members of one or more tar files: image i is the member ``entries[i]`` of ``containers[c]``."""

    kind = "tar"

    def __init__(self, containers: list[str], entries: list[tuple], kind: str = "tar"):
        # entries[i] = (container index, member name, data offset, size, sparse map or None), aligned with the
        # evaluation set's names
        self.containers = [str(c) for c in containers]
        self.entries = [tuple(e) + (None,) * (5 - len(e)) for e in entries]
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
        c, name, offset, size, sparse = self.entries[i]
        try:
            return member_bytes(self._fd(c), offset, size, sparse)
        except OSError as e:
            raise BadImage(f"cannot read {self.where(i)} ({e.strerror or e})") from None
        except ShortRead as e:
            raise BadImage(f"{self.where(i)}: truncated ({e})") from None

    def identity(self) -> list[tuple[str, int, int]]:
        """(member, size, the container's mtime_ns) per image."""
        return [(f"{os.path.basename(self.containers[c])}:{name}", size, self._mtimes[c] ^ offset)
                for c, name, offset, size, _ in self.entries]

    def members(self) -> list[str]:
        """Where each image is, independent of the machine (what the record's member-list hash covers)."""
        return [f"{os.path.basename(self.containers[c])}:{name}\t{size}" for c, name, _, size, _ in self.entries]

    def where(self, i: int) -> str:
        c, name = self.entries[i][:2]
        return f"{self.containers[c]}:{name}"

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
