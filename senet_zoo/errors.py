"""The one exception type users see.

Every failure a user can cause (a missing, truncated or mismatched file, a bad
argument) is raised as ``SenetZooError``; the CLI prints it as one line that
names the file and exits non-zero, with no traceback.
"""
from __future__ import annotations

import os


class SenetZooError(Exception):
    """A user-facing error: ``<path>: <message>``, exit code ``exit_code``."""

    def __init__(self, path: str | os.PathLike | None, message: str, exit_code: int = 2):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        self.exit_code = exit_code
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
