"""The progress file of an interrupted run (``--resume``): what it holds, and the checks that keep a damaged
or forged one from steering the loop (it is the user's file: never unpickled, sizes checked before inflating).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import jsonio
from ..errors import SenetZooError
from ..files import atomic_path
from .batches import STATUS_BAD, STATUS_OK

NUM_CLASSES = 1000


# what Progress.save writes: member -> (numpy dtype kinds, number of dimensions)
_PROGRESS_FIELDS = {"key": ("U", 0), "done_batches": ("iu", 0), "rows": ("iu", 0), "top5": ("iu", 2),
                    "status": ("i", 1), "elapsed": ("f", 0), "logits_rows": ("iu", 0)}


def _progress_problem(state: dict, n_images: int, batch_size: int) -> str | None:
    """What is wrong with a loaded progress state for this run, or None."""
    for name, (kinds, ndim) in _PROGRESS_FIELDS.items():
        value = state[name]
        if value.dtype.kind not in kinds or value.ndim != ndim:
            return f"'{name}' is {value.dtype} of {value.ndim} dimensions"
    done, rows, logits_rows = (int(state[k]) for k in ("done_batches", "rows", "logits_rows"))
    if not 0 <= done <= math.ceil(n_images / batch_size) or rows != min(done * batch_size, n_images):
        return f"{done} batches and {rows} rows do not fit {n_images} images in batches of {batch_size}"
    if not 0 <= logits_rows <= rows:
        return f"{logits_rows} rows of logits for {rows} rows"
    elapsed = float(state["elapsed"])
    if not (math.isfinite(elapsed) and elapsed >= 0):
        return f"elapsed time {elapsed}"
    top5, status = state["top5"], state["status"]
    if top5.shape != (rows, 5) or status.shape != (rows,):
        return f"top-5 rows {top5.shape} and status {status.shape} for {rows} rows"
    if rows and (top5.min() < -1 or top5.max() >= NUM_CLASSES):
        return "top-5 classes out of range"
    if not np.isin(status, (STATUS_BAD, STATUS_OK)).all():
        return "status values other than bad (0) and ok (1)"
    return None


def _check_member_sizes(path: Path, n_images: int) -> None:
    """Refuse members larger than a run over ``n_images`` writes before anything is inflated: a forged
    ``.npz`` can declare a tiny deflated member that expands to gigabytes. zipfile reads no more than the
    declared size, so checking it bounds the memory."""
    import zipfile

    limit = 64 * n_images + (1 << 20)  # top5 int16 (10 B/image) with room; the key and headers in the MiB
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.file_size > limit:
                raise ValueError(f"member {info.filename} declares {info.file_size:,} bytes, more than a run "
                                 f"over {n_images:,} images writes")


class Progress:
    """``<output stem>.progress.npz`` beside the record: the settings it belongs to (``key``), how many
    batches are done, and their top-5/status rows; with ``--save-logits`` the logits are appended to
    ``<stem>.logits.partial`` (its valid length is recorded here)."""

    def __init__(self, path: Path, key: dict):
        self.path = Path(path)
        self.key = key
        self.key_json = json.dumps(key, sort_keys=True)
        self.logits_path = self.path.with_name(self.path.name.replace(".progress.npz", ".logits.partial"))
        self.owned = False  # this run may write (and on failure remove) it: set once any resume check passed

    def load(self, n_images: int, batch_size: int) -> dict | None:
        """The saved state, checked to be exactly what ``save`` writes for a run over ``n_images`` images in
        batches of ``batch_size``: the file is the user's, and a forged one must not steer the loop."""
        if not self.path.is_file():
            return None
        try:
            _check_member_sizes(self.path, n_images)
            with np.load(self.path, allow_pickle=False) as z:
                if sorted(z.files) != sorted(_PROGRESS_FIELDS):
                    raise ValueError(f"holds {', '.join(sorted(z.files)) or 'nothing'}, not "
                                     f"{', '.join(sorted(_PROGRESS_FIELDS))}")
                state = {k: z[k] for k in z.files}
            problem = _progress_problem(state, n_images, batch_size)
            if problem:
                raise ValueError(problem)
            stored = jsonio.loads(str(state["key"]))
            if not isinstance(stored, dict):
                raise ValueError("its settings are not a JSON object")
        except Exception as e:  # a damaged or forged progress file is a user-facing problem
            raise SenetZooError(self.path, f"unreadable progress file ({e}); delete it to start afresh") from None
        if stored != json.loads(self.key_json):
            diff = sorted(k for k in set(stored) | set(self.key) if stored.get(k) != self.key.get(k))
            raise SenetZooError(self.path, f"belongs to a run with other settings ({', '.join(diff)[:200]} differ); "
                                "rerun without --resume to start afresh")
        return state

    def save(self, done_batches: int, rows: int, top5: np.ndarray, status: np.ndarray, elapsed: float,
             logits_rows: int) -> None:
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(self.key_json), done_batches=np.int64(done_batches),
                         rows=np.int64(rows), top5=top5[:rows].astype(np.int16), status=status[:rows],
                         elapsed=np.float64(elapsed), logits_rows=np.int64(logits_rows))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.logits_path.unlink(missing_ok=True)
