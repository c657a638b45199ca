"""How many file descriptors this process holds, for the tests that no reader leaves a file open (Linux's
/proc/self/fd; the tests that count carry ``needs_proc`` and skip, saying why, elsewhere)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc/self/fd")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
