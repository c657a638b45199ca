"""Parsing JSON that a user (or an attacker) hands us, within limits.

Python's ``json`` recurses once per nesting level (20,000 nested ``[`` end in a ``RecursionError``) and
turns digits into ints of any length (a 100,000-digit number is quadratic to convert, and Python refuses
those above 4,300 digits with a ``ValueError``). Every user-supplied JSON document (label files, validation
records, progress-file metadata, safetensors headers, config.json) goes through :func:`loads`, which checks
size and nesting depth on the raw text first (one linear pass, no recursion), and turns any failure into
:class:`JSONLimitError`, a ``ValueError``, so callers catch one exception and report one line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .files import read_at_most

MAX_DEPTH = 64
MAX_BYTES = 256 << 20
MAX_NUMBER_DIGITS = 100  # no number we read is longer; longer ones are refused before Python converts them

__all__ = ["JSONLimitError", "loads", "load_path", "MAX_DEPTH", "MAX_BYTES"]

_STRUCT = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|[-+0-9.eE]{%d,}' % (MAX_NUMBER_DIGITS + 1))


class JSONLimitError(ValueError):
    """Not JSON, or JSON beyond our limits (size, depth, number length)."""


def _check_limits(data: bytes, max_depth: int) -> None:
    depth = 0
    for match in _STRUCT.finditer(data):
        token = match.group()
        first = token[:1]
        if first == b'"':
            continue
        if first in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise JSONLimitError(f"nested more than {max_depth} levels deep")
        elif first in (b"]", b"}"):
            depth -= 1
        else:
            raise JSONLimitError(f"a number of {len(token)} characters (at most {MAX_NUMBER_DIGITS})")


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """``json.loads`` with limits; raises ``JSONLimitError`` (a ``ValueError``) on anything it refuses."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JSONLimitError(f"{len(raw)} bytes of JSON, more than the {max_bytes} allowed")
    _check_limits(raw, max_depth)
    try:
        text = raw.decode("utf-8-sig")  # a BOM is tolerated
    except UnicodeDecodeError as e:
        raise JSONLimitError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except JSONLimitError:
        raise
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JSONLimitError("nested too deeply") from None
    except json.JSONDecodeError as e:
        raise JSONLimitError(f"not valid JSON: {e}") from None
    except ValueError as e:  # e.g. Python's int digit limit
        raise JSONLimitError(f"not valid JSON: {e}") from None


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONLimitError(f"not valid JSON: {text} is out of range")
    return value


def _no_constant(name: str):
    raise JSONLimitError(f"not valid JSON: {name} is not a JSON value")


def load_path(path: str | Path, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """The JSON document in ``path`` (size checked before reading it); ``OSError`` passes through."""
    return loads(read_at_most(path, max_bytes), max_depth=max_depth, max_bytes=max_bytes)
