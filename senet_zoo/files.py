"""Writing outputs so that a failure never leaves a partial file behind, and hashing inputs.

Temporaries live beside their target (so the final ``os.replace`` is atomic) and carry the writing process's
id in their name: a process killed while writing (SIGKILL, power loss) cannot clean up after itself, so the
next write to the same target removes the temporaries of processes that no longer exist. What is written
gets ordinary permissions (0644 files, 0755 folders, less what the umask removes), not the private 0600/0700
that ``tempfile`` creates.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from .errors import SenetZooError


def read_at_most(path: str | os.PathLike, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of ``path`` (one more than the limit, so the caller can tell it was over).
    ``read(n)`` allocates n bytes up front: the file's own size bounds the read, not the limit. ``OSError``
    passes through."""
    with open(path, "rb") as f:
        return f.read(min(os.fstat(f.fileno()).st_size, limit) + 1)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def umask() -> int:
    """The process's umask, without changing it where the system can tell (Linux's /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive: its files are left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process: leave its files alone
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that writes to ``path`` left behind in processes that no longer exist."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-(\d+)-[0-9a-f]{{8}}")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if not match or int(match.group(2)) == os.getpid() or process_alive(int(match.group(2))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        removed.append(Path(entry.path))
    return removed


def _prepare_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SenetZooError(path.parent, f"cannot create the output folder: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise SenetZooError(path.parent, "is not writable: cannot write the output here")
    remove_stale_temporaries(path)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    _prepare_parent(path)
    tmp = _temp_name(path, "tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies: usually 0644
    except OSError as e:
        raise SenetZooError(path.parent, f"cannot write here: {e.strerror or e}") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # the block may have replaced the file (e.g. a library's own write)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fix_modes(folder: Path) -> None:
    mask = umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole when the block succeeds.

    An existing ``path`` is only removed after the new content is complete. A symbolic link at ``path`` is
    replaced by the new folder (the folder it points to is left as it is).
    """
    path = Path(path)
    _prepare_parent(path)
    tmp = _temp_name(path, "tmp")
    try:
        tmp.mkdir(0o777)
    except OSError as e:
        raise SenetZooError(path.parent, f"cannot write here: {e.strerror or e}") from None
    try:
        yield tmp
        _fix_modes(tmp)
        if path.is_symlink() or path.exists():
            old = _temp_name(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
