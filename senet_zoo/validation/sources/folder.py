"""Where the evaluation images' bytes come from: one reader per way users hold the validation set.

A reader maps image index i (in the evaluation set's name order) to the encoded bytes of that image.
Readers are pickled into DataLoader workers, so they hold only plain data and open their file handles
lazily, once per process. Everything downstream (decoding, the cache, the evaluation loop) sees only
``read(i)`` and ``identity()``, never paths.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...images.preprocess import read_file


class FolderReader:
    """Images as files under ``root`` (flat or ImageFolder layout)."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike, names: list[str]):
        self.root, self.names = str(root), list(names)

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.names[i])

    def read(self, i: int) -> bytes:
        return read_file(self.path(i))

    def identity(self) -> list[tuple[str, int, int]]:
        """(name, size, mtime_ns) per image: what a cache of decoded images is keyed by."""
        out = []
        for name in self.names:
            try:
                st = os.stat(os.path.join(self.root, name))
                out.append((name, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((name, -1, -1))
        return out

    def where(self, i: int) -> Path:
        """What an error about image i names."""
        return Path(self.path(i))


class PathListReader(FolderReader):
    """Arbitrary image files (``verify --images``, benchmarks): names are the paths themselves."""

    def __init__(self, paths: list[str | os.PathLike]):
        super().__init__("", [str(p) for p in paths])

    def path(self, i: int) -> str:
        return self.names[i]
