"""The evaluation loop: uint8 batches from DataLoader workers, normalised on the device, top-5 kept per image.

Hot path per batch: workers decode + resize + crop into one preallocated ``(n, crop, crop, 3)`` uint8 array
(``BatchDataset``: one DataLoader item is a whole batch, so no per-image collate); the main process copies it
to the device (pinned, non-blocking), permutes NHWC -> NCHW (a view with channels_last strides), converts to
float32 and normalises there, runs the model under ``torch.inference_mode()`` and keeps only the top-5
indices (and, with ``--save-logits``, the logits). Results of step s are copied back while step s+1 runs.

Batches are fixed (batch k = images [kB, (k+1)B) in name order) and assigned round-robin to ranks; see
``distributed.py``. Per-step progress (top-5 of every finished image) is written atomically by rank 0, so an
interrupted run resumes with ``--resume`` and ends with exactly the numbers of an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import jsonio
from ..errors import SenetZooError
from ..files import atomic_path
from . import distributed, numerics
from .data import EvalSet
from .preprocess import BadImage, Preprocessing
from .sources import PathListReader

NUM_CLASSES = 1000
# Test hook: SIGKILL this process (rank 0) right after it has written the progress of this many steps.
KILL_AFTER_STEPS_ENV = "SENET_ZOO_VALIDATE_KILL_AFTER_STEPS"
STATUS_PAD, STATUS_BAD, STATUS_OK = -1, 0, 1
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class EvalOptions:
    device: torch.device
    precision: str = "fp32"          # fp32 | bf16 | fp16 (autocast)
    batch_size: int = 128
    workers: int = 4
    channels_last: bool = False
    skip_bad_images: bool = False
    save_logits: bool = False
    show_progress: bool = True
    cache: object = None             # cache.DecodeCache: stored crops instead of decoding
    probe: bool = True               # the conv-vs-float64 probe before the loop (numerics.conv_probe)


@dataclass
class Outcome:
    top5: np.ndarray                 # (N, 5) int64, rows of bad images undefined
    status: np.ndarray               # (N,) int8: 1 evaluated, 0 bad image
    logits: np.ndarray | None        # (N, 1000) float32 with --save-logits (rank 0)
    wall_time_s: float               # all sessions of this run (resumed runs add up)
    session_time_s: float
    session_images: int              # images evaluated by this process group in this session
    resumed_from: int = 0            # images already done when this session started
    bad_names: list[str] = field(default_factory=list)
    numerics: dict = field(default_factory=dict)  # flags read back just before the loop, the conv probe


# ------------------------------------------------------------------------------------------------- data

class BatchDataset(torch.utils.data.Dataset):
    """Item k = batch k: (k, uint8 images (batch_size, crop, crop, 3) RGB, int8 status (batch_size,)).

    The last batch is padded to full size with zero images of status ``STATUS_PAD`` (dropped after the model):
    every forward pass has the same shape, so the kernels (cuDNN's choice, a compiled graph) and therefore the
    numbers of an image do not depend on where the set ends. ``reader`` is one of ``sources``' readers
    (``read(i) -> bytes``; a list of paths is read as files); with ``cache`` (``cache.DecodeCache``) stored
    crops are copied instead of decoded, and decoded ones are stored."""

    def __init__(self, reader, prep: Preprocessing, batch_size: int, cache=None, pad: bool = True):
        if isinstance(reader, (list, tuple)):
            reader = PathListReader(reader)
        self.reader, self.prep, self.batch_size, self.cache, self.pad = reader, prep, batch_size, cache, pad

    def __len__(self) -> int:
        return math.ceil(len(self.reader) / self.batch_size)

    def __getitem__(self, k: int):
        start = k * self.batch_size
        n = min(self.batch_size, len(self.reader) - start)
        rows = self.batch_size if self.pad else n
        crop = self.prep.crop
        images = np.zeros((rows, crop, crop, 3), dtype=np.uint8)
        status = np.full(rows, STATUS_PAD, dtype=np.int8)
        if self.cache is not None:
            self.cache.fill(start, images, status[:n], self.reader, self.prep, STATUS_OK, STATUS_BAD)
        else:
            status[:n] = STATUS_OK
            for row in range(n):
                try:
                    self.prep.decode_rgb(self.reader.read(start + row), images[row])
                except BadImage:
                    status[row] = STATUS_BAD
        return k, torch.from_numpy(images), torch.from_numpy(status)


def make_loader(ds: BatchDataset, batches: list[int], workers: int, pin_memory: bool):
    """One item per batch (``batch_size=None``). Iterate it through ``start(loader)``. Two batches in flight
    per worker (``prefetch_factor`` 2) keep the queue full without holding more pinned memory than needed."""
    kwargs = dict(persistent_workers=True, prefetch_factor=2) if workers > 0 else {}
    return torch.utils.data.DataLoader(ds, batch_size=None, sampler=batches, num_workers=workers,
                                       pin_memory=pin_memory, **kwargs)


def start(loader):
    """``iter(loader)`` with OpenCV single-threaded while the workers fork: each worker decodes on one core
    (torch already sets one thread per worker). Calling ``cv2.setNumThreads`` *inside* a forked worker
    deadlocks when the parent had used OpenCV's thread pool (it destroys a condition variable that the
    parent's pool threads, absent in the child, wait on), so the setting is inherited instead."""
    if loader.num_workers == 0:
        return iter(loader)
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return iter(loader)
    finally:
        cv2.setNumThreads(previous)


class _DeviceFeed:
    """Batches from the loader, already on the device. On CUDA the host-to-device copy of batch s+1 is issued
    on a side stream (``prefetch``, called once batch s is queued), so it overlaps batch s's compute; the
    compute stream waits for it only when it takes the batch. Elsewhere a plain pass-through."""

    def __init__(self, it, device: torch.device):
        self.it, self.device = it, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ready = None

    def prefetch(self) -> None:
        if self.ready is not None:
            return
        try:
            k, images, st = next(self.it)
        except StopIteration:
            return
        if self.stream is not None:
            with torch.cuda.stream(self.stream):
                images = images.to(self.device, non_blocking=True)
                st = st.to(self.device, non_blocking=True)
        self.ready = (k, images, st)

    def take(self):
        self.prefetch()
        if self.ready is None:
            raise StopIteration
        k, images, st = self.ready
        self.ready = None
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            images.record_stream(current)  # allocated on the side stream, used (and freed) on this one
            st.record_stream(current)
        return k, images, st


# -------------------------------------------------------------------------------------------- progress

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


# ------------------------------------------------------------------------------------------------- loop

class _Reporter:
    """A tqdm bar (images/s) on a terminal, else a line every ~10%."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.total, self.done, self.enabled = total, initial, enabled
        self.bar = None
        self.start = time.perf_counter()
        self.start_done = initial
        self.next_line = initial + max(1, total // 10)
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            # miniters=1: tqdm's monitor thread then never redraws on its own, so with --workers 0 nothing
            # writes to stderr while a decode has it redirected (decoder_messages.py).
            self.bar = tqdm(total=total, initial=initial, unit="img", unit_scale=False, dynamic_ncols=True,
                            smoothing=0.05, desc="validate", file=sys.stderr, miniters=1)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and (self.done >= self.next_line or self.done == self.total):
            rate = (self.done - self.start_done) / max(time.perf_counter() - self.start, 1e-9)
            print(f"validate: {self.done:,}/{self.total:,} images, {rate:,.1f} img/s", file=sys.stderr, flush=True)
            self.next_line = self.done + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate(model: torch.nn.Module, evalset: EvalSet, prep: Preprocessing, mean: list[float], std: list[float],
             opts: EvalOptions, dist: distributed.Dist, progress: Progress | None = None, resume: bool = False,
             log: Callable[[str], None] = print) -> Outcome:
    n_images, bsz = len(evalset), opts.batch_size
    n_batches = math.ceil(n_images / bsz)
    world, rank = dist.world_size, dist.rank
    device = opts.device
    top5 = np.zeros((n_images, 5), dtype=np.int64)
    status = np.full(n_images, STATUS_PAD, dtype=np.int8)
    main = dist.is_main

    # ---- resume (rank 0 reads, everyone learns where to start)
    done_batches, prior_elapsed, logits_rows = 0, 0.0, 0
    problem = None
    if main and progress is not None:
        try:
            state = progress.load(n_images, bsz) if resume else None
            if state is not None and opts.save_logits and (
                    not progress.logits_path.is_file()
                    or progress.logits_path.stat().st_size < int(state["logits_rows"]) * NUM_CLASSES * 4):
                raise SenetZooError(progress.logits_path, "the saved logits of the interrupted run are missing "
                                    "or short; rerun without --resume")
        except SenetZooError as e:
            state, problem = None, (e.path, e.message)
    problem = distributed.broadcast_object(problem, dist)  # every rank fails the same way
    if problem is not None:
        raise SenetZooError(*problem)
    if progress is not None:
        progress.owned = True
    if main and progress is not None:
        if state is not None:
            done_batches = int(state["done_batches"])
            rows = int(state["rows"])
            top5[:rows] = state["top5"].astype(np.int64)
            status[:rows] = state["status"]
            prior_elapsed = float(state["elapsed"])
            logits_rows = int(state["logits_rows"])
            log(f"resuming: {rows:,} of {n_images:,} images done ({done_batches} batches)")
        elif resume:
            log(f"no progress file {progress.path}; starting from the first image")
        if not opts.save_logits or state is None:
            logits_rows = 0
    done_batches = int(distributed.broadcast_object(done_batches, dist))
    if dist.enabled and done_batches:  # every rank holds every row, to decide about bad images identically
        rows = min(done_batches * bsz, n_images)
        synced = distributed.broadcast_object((top5[:rows], status[:rows]) if main else None, dist)
        top5[:rows], status[:rows] = synced
    resumed_from = min(done_batches * bsz, n_images)

    logits_file = None
    if opts.save_logits and main and progress is not None:
        progress.logits_path.parent.mkdir(parents=True, exist_ok=True)
        logits_file = open(progress.logits_path, "r+b" if logits_rows else "wb")
        logits_file.truncate(logits_rows * NUM_CLASSES * 4)
        logits_file.seek(0, os.SEEK_END)
    mem_logits = [] if opts.save_logits and progress is None and main else None

    # ---- model and constants on the device
    mean255 = torch.tensor(np.asarray(mean, np.float64) * 255.0, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std255 = torch.tensor(np.asarray(std, np.float64) * 255.0, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    amp = AMP_DTYPES.get(opts.precision)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext
    is_cuda = device.type == "cuda"

    my_batches = list(range(done_batches + rank, n_batches, world))
    n_steps = math.ceil((n_batches - done_batches) / world)
    dataset = BatchDataset(evalset.reader, prep, bsz, cache=opts.cache)
    loader = make_loader(dataset, my_batches, opts.workers, is_cuda) if my_batches else None
    reporter = _Reporter(n_images, resumed_from, opts.show_progress and main)
    kill_after = int(os.environ.get(KILL_AFTER_STEPS_ENV, "0") or 0)
    scan_only = bool((status[:resumed_from] == STATUS_BAD).any()) and not opts.skip_bad_images

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # NCHW view, channels_last strides
        if not opts.channels_last:
            x = x.contiguous()
        x = x.sub_(mean255).div_(std255)
        with autocast():
            return model(x).float()

    def commit(step: int, packed: torch.Tensor, logits: torch.Tensor | None, event) -> None:
        nonlocal scan_only, logits_rows
        if event is not None:
            event.synchronize()
        packed = packed.numpy()
        new = 0
        for r in range(world):
            b = done_batches + step * world + r
            if b >= n_batches:
                continue
            start = b * bsz
            n = min(bsz, n_images - start)
            rows = packed[r * bsz:r * bsz + n]
            top5[start:start + n] = rows[:, :5]
            status[start:start + n] = rows[:, 5]
            new += n
            if logits is not None and main:
                chunk = np.ascontiguousarray(logits[r * bsz:r * bsz + n].numpy(), dtype=np.float32)
                if logits_file is not None:
                    logits_file.write(chunk.tobytes())
                    logits_rows += n
                elif mem_logits is not None:
                    mem_logits.append(chunk)
        finished = min(done_batches + (step + 1) * world, n_batches)
        rows_done = min(finished * bsz, n_images)
        if (status[:rows_done] == STATUS_BAD).any() and not opts.skip_bad_images:
            scan_only = True  # the run will fail: only find the other bad images, no more inference
        elif main and progress is not None:
            if logits_file is not None:
                logits_file.flush()
                os.fsync(logits_file.fileno())
            progress.save(finished, rows_done, top5, status, prior_elapsed + time.perf_counter() - t0, logits_rows)
        reporter.update(new)
        if main and kill_after and step + 1 >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    # What the loop will compute with: the flags as torch reports them now, and a measured convolution.
    flags = numerics.read_flags()
    if opts.precision == "fp32":
        numerics.require_exact(flags)
    probe = numerics.conv_probe(device, amp, opts.channels_last) if opts.probe else None
    numerics_info = {"flags_before_loop": flags, "conv_probe": probe}

    t0 = time.perf_counter()
    pending = None
    try:
        with torch.inference_mode():
            it = _DeviceFeed(start(loader), device) if loader is not None else None
            for step in range(n_steps):
                b = done_batches + step * world + rank
                packed = torch.full((bsz, 6), STATUS_PAD, dtype=torch.int64, device=device)
                packed[:, :5] = 0
                logits_pad = torch.zeros((bsz, NUM_CLASSES), dtype=torch.float32, device=device) \
                    if opts.save_logits else None
                if b < n_batches:
                    k, images, st = it.take()
                    assert k == b, (k, b)
                    n = images.shape[0]
                    if not scan_only:
                        logits = forward(images)
                        packed[:n, :5] = logits.topk(5, dim=1).indices
                        if logits_pad is not None:
                            logits_pad[:n] = logits
                    packed[:n, 5] = st.to(device, non_blocking=True).to(torch.int64)
                    it.prefetch()  # waits for the next batch while the device computes this one
                gathered = torch.cat(distributed.all_gather(packed, dist))
                gathered_logits = torch.cat(distributed.all_gather(logits_pad, dist)) if logits_pad is not None else None
                event = None
                if is_cuda:
                    gathered = gathered.to("cpu", non_blocking=True)
                    if gathered_logits is not None:
                        gathered_logits = gathered_logits.to("cpu", non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                if pending is not None:
                    commit(*pending)
                pending = (step, gathered, gathered_logits, event)
            if pending is not None:
                commit(*pending)
                pending = None
    finally:
        reporter.close()
        if logits_file is not None:
            logits_file.close()
        del loader
    session = time.perf_counter() - t0
    assert not (status == STATUS_PAD).any(), "some images were not evaluated"

    bad = [evalset.names[i] for i in np.flatnonzero(status == STATUS_BAD)]
    if bad and not opts.skip_bad_images:
        shown = ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise SenetZooError(evalset.root, f"{len(bad)} unreadable or corrupt image{'s' if len(bad) > 1 else ''}: "
                            f"{shown} (pass --skip-bad-images to evaluate without them)")
    logits_arr = None
    if opts.save_logits and main:
        if progress is not None:
            logits_arr = np.fromfile(progress.logits_path, dtype=np.float32).reshape(-1, NUM_CLASSES)
        else:
            logits_arr = np.concatenate(mem_logits) if mem_logits else np.zeros((0, NUM_CLASSES), np.float32)
        if logits_arr.shape[0] != n_images:
            raise SenetZooError(progress.logits_path if progress else None,
                                f"holds logits of {logits_arr.shape[0]} images, expected {n_images}")
    return Outcome(top5=top5, status=status, logits=logits_arr, wall_time_s=prior_elapsed + session,
                   session_time_s=session, session_images=n_images - resumed_from, resumed_from=resumed_from,
                   bad_names=bad, numerics=numerics_info)
