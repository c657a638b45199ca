"""What the C image libraries inside OpenCV write to stderr while decoding, caught instead of printed.

libjpeg and libpng report damaged files ("Corrupt JPEG data: 67 extraneous bytes before marker 0x22",
"premature end of data segment") with ``fprintf(stderr, ...)`` from C: no Python exception, no OpenCV
log level reaches them (opencv/opencv-python#610). Left alone they tear through the progress bar and break
the promise of one line per bad input. So file descriptor 2 is pointed at a private temporary file for
the duration of one ``cv2.imdecode`` call, and what landed there comes back as text: part of the reason
when the image does not decode, dropped when it does (Caffe's own ``imread`` decoded such files the same
way, with the same warning, so they count as ordinary images).

The redirection is process-wide, so it is serialised by a lock; evaluation decodes in DataLoader worker
processes, one image at a time, so nothing else writes to fd 2 there. In the main process (``--workers
0``) the progress bar is drawn between images, never during a decode.
"""
from __future__ import annotations

import os
import tempfile
import threading
from typing import Callable, TypeVar

T = TypeVar("T")
_MAX_MESSAGE = 2000

_lock = threading.Lock()
_sink: tuple[int, int] | None = None  # (pid, fd of the temporary file), per process: workers are forked


def _sink_fd() -> int:
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        f = tempfile.TemporaryFile(prefix="senet-zoo-decoder-")
        _sink = (os.getpid(), os.dup(f.fileno()))  # unlinked already; our dup keeps it alive
        f.close()
    return _sink[1]


def call_capturing_stderr(fn: Callable[[], T]) -> tuple[T, str]:
    """``fn()`` with fd 2 redirected; returns its result and what C code wrote to stderr meanwhile."""
    with _lock:
        try:
            sink = _sink_fd()
            saved = os.dup(2)
        except OSError:  # no temp dir or no fds to spare: decode uncaptured rather than not at all
            return fn(), ""
        try:
            os.ftruncate(sink, 0)
            os.lseek(sink, 0, os.SEEK_SET)
            os.dup2(sink, 2)
            result = fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        size = os.fstat(sink).st_size
        if not size:
            return result, ""
        text = os.pread(sink, min(size, _MAX_MESSAGE), 0).decode("utf-8", "replace")
        return result, " ".join(text.split())
