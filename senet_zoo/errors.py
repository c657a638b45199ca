"""The one exception type users see.

Every failure a user can cause (a missing, truncated or mismatched file, a bad
argument) is raised as ``SenetZooError``; the CLI prints it as one line that
names the file and exits non-zero, with no traceback.
"""
from __future__ import annotations

import os
import re

# Line breaks and other control characters, escaped in the message: names and types read from a user's file
# may hold any of them, and the error is one line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")  # a tab stays


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class SenetZooError(Exception):
    """A user-facing error: ``<path>: <message>``, exit code ``exit_code``."""

    def __init__(self, path: str | os.PathLike | None, message: str, exit_code: int = 2):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        self.exit_code = exit_code
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return _one_line(text)
