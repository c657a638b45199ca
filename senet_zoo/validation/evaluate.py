"""The evaluation loop: uint8 batches from DataLoader workers, normalised on the device, top-5 kept per image.

Hot path per batch: workers decode + resize + crop into one preallocated ``(n, crop, crop, 3)`` uint8 array
(``batches.BatchDataset``); the main process copies it to the device (pinned, non-blocking), permutes NHWC ->
NCHW (a view with channels_last strides), converts to float32 and normalises there, runs the model under
``torch.inference_mode()`` and keeps only the top-5 indices (and, with ``--save-logits``, the logits). Results
of step s are copied back while step s+1 runs.

Batches are fixed (batch k = images [kB, (k+1)B) in name order) and assigned round-robin to ranks; see
``distributed.py``. Progress (top-5 of every finished image) is written atomically by rank 0 after the first
step, then at most every ``SAVE_EVERY_S`` and on an interruption (``progress.py``), so an interrupted run
resumes with ``--resume`` and ends with exactly the numbers of an uninterrupted one. With a filled decode
cache the batches are slices of the whole set's crops (``resident.py``: in device memory on CUDA) instead of
DataLoader items.

``evaluate`` reads as the procedure: where to start (``_resume``), where logits go (``_LogitsSink``), how a
batch becomes logits (``forward_fn``), what the loop computes with (``_numerics_before_loop``), the loop
(``_loop``, each step's results entered by ``_Table.commit``), and what came out (``_outcome``).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import SenetZooError
from ..images.preprocess import Preprocessing
from . import distributed, numerics
from .batches import STATUS_BAD, STATUS_PAD, BatchDataset, DeviceFeed, make_loader, start
from .data import EvalSet
from .progress import NUM_CLASSES, Progress

# Test hook: SIGKILL this process (rank 0) right after it has written the progress of this many steps.
KILL_AFTER_STEPS_ENV = "SENET_ZOO_VALIDATE_KILL_AFTER_STEPS"
# Test hook: seconds between progress saves instead of SAVE_EVERY_S (e.g. 3600: only the first step's is saved).
SAVE_EVERY_ENV = "SENET_ZOO_VALIDATE_SAVE_EVERY_S"
# Progress is saved after the first step, then at most this often, and when the run is interrupted (Ctrl-C,
# SIGTERM): after every batch it cost an fsync of the logits and a rewrite of every finished row's top-5 (at
# thousands of images/s, hundreds of writes per second). A kill (SIGKILL, power) loses at most these seconds:
# --resume recomputes those batches, with the same numbers.
SAVE_EVERY_S = 5.0
# Test hook, "STEP:PATH": rank 0 pauses before step STEP (0: before the decode workers start) until PATH exists,
# having created PATH.waiting, so a test can run something else at a known point of this run.
PAUSE_BEFORE_STEP_ENV = "SENET_ZOO_VALIDATE_PAUSE_BEFORE_STEP"
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
    resident: object = None          # resident.ResidentCrops: every batch sliced from the whole set's crops
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


# ------------------------------------------------------------------------------------------------- loop

def evaluate(model: torch.nn.Module, evalset: EvalSet, prep: Preprocessing, mean: list[float], std: list[float],
             opts: EvalOptions, dist: distributed.Dist, progress: Progress | None = None, resume: bool = False,
             log: Callable[[str], None] = print) -> Outcome:
    table = _Table(len(evalset), opts.batch_size, dist)
    start_at = _resume(table, progress, resume, opts, dist, log)
    sink = _LogitsSink(opts, progress, dist, start_at.logits_rows)
    forward = forward_fn(model, mean, std, opts)
    loader = _loader(evalset, prep, opts, dist, table, start_at)
    reporter = _Reporter(table.n_images, start_at.resumed_from, opts.show_progress and dist.is_main)
    numerics_info = _numerics_before_loop(opts)
    t0 = time.perf_counter()
    try:
        _loop(forward, loader, opts, dist, table, start_at, sink, progress, reporter, t0)
    finally:
        reporter.close()
        sink.close()
        del loader
    return _outcome(evalset, opts, dist, table, start_at, sink, progress, time.perf_counter() - t0, numerics_info)


class _Table:
    """Top-5 and status of every image of the set, in every rank (each rank enters all ranks' rows)."""

    def __init__(self, n_images: int, batch_size: int, dist: distributed.Dist):
        self.n_images, self.bsz, self.world = n_images, batch_size, dist.world_size
        self.n_batches = math.ceil(n_images / batch_size)
        self.top5 = np.zeros((n_images, 5), dtype=np.int64)
        self.status = np.full(n_images, STATUS_PAD, dtype=np.int8)

    def rows_of(self, batches: int) -> int:
        return min(batches * self.bsz, self.n_images)

    def any_bad(self, rows: int) -> bool:
        return bool((self.status[:rows] == STATUS_BAD).any())


@dataclass
class _Start:
    """Where this session starts: batches done by an interrupted run, their time, logits rows on disk."""
    done_batches: int = 0
    prior_elapsed: float = 0.0
    logits_rows: int = 0
    resumed_from: int = 0


def _resume(table: _Table, progress: Progress | None, resume: bool, opts: EvalOptions, dist: distributed.Dist,
            log: Callable[[str], None]) -> _Start:
    """Rank 0 reads the progress file (``--resume``), every rank learns where to start and the rows done."""
    at = _Start()
    state, problem = None, None
    if dist.is_main and progress is not None:
        try:
            state = progress.load(table.n_images, table.bsz) if resume else None
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
    if dist.is_main and progress is not None:
        if state is not None:
            at.done_batches = int(state["done_batches"])
            rows = int(state["rows"])
            table.top5[:rows] = state["top5"].astype(np.int64)
            table.status[:rows] = state["status"]
            at.prior_elapsed = float(state["elapsed"])
            at.logits_rows = int(state["logits_rows"])
            log(f"resuming: {rows:,} of {table.n_images:,} images done ({at.done_batches} batches)")
        elif resume:
            log(f"no progress file {progress.path}; starting from the first image")
        if not opts.save_logits or state is None:
            at.logits_rows = 0
    at.done_batches = int(distributed.broadcast_object(at.done_batches, dist))
    if dist.enabled and at.done_batches:  # every rank holds every row, to decide about bad images identically
        rows = table.rows_of(at.done_batches)
        synced = distributed.broadcast_object((table.top5[:rows], table.status[:rows]) if dist.is_main else None,
                                              dist)
        table.top5[:rows], table.status[:rows] = synced
    at.resumed_from = table.rows_of(at.done_batches)
    return at


class _LogitsSink:
    """Where ``--save-logits`` rows go on rank 0: appended to the progress's ``.logits.partial`` (so a resumed
    run keeps them), or kept in memory when there is no progress file."""

    def __init__(self, opts: EvalOptions, progress: Progress | None, dist: distributed.Dist, rows: int):
        self.rows, self.file, self.memory = rows, None, None
        self.progress = progress
        if opts.save_logits and dist.is_main and progress is not None:
            progress.logits_path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(progress.logits_path, "r+b" if rows else "wb")
            self.file.truncate(rows * NUM_CLASSES * 4)
            self.file.seek(0, os.SEEK_END)
        elif opts.save_logits and dist.is_main:
            self.memory = []

    def add(self, chunk: np.ndarray) -> None:
        if self.file is not None:
            self.file.write(chunk.tobytes())
            self.rows += len(chunk)
        elif self.memory is not None:
            self.memory.append(chunk)

    def sync(self) -> None:
        """On disk before the progress file that counts these rows is written."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def result(self, n_images: int) -> np.ndarray:
        if self.progress is not None:
            arr = np.fromfile(self.progress.logits_path, dtype=np.float32).reshape(-1, NUM_CLASSES)
        else:
            arr = np.concatenate(self.memory) if self.memory else np.zeros((0, NUM_CLASSES), np.float32)
        if arr.shape[0] != n_images:
            raise SenetZooError(self.progress.logits_path if self.progress else None,
                                f"holds logits of {arr.shape[0]} images, expected {n_images}")
        return arr


def forward_fn(model: torch.nn.Module, mean: list[float], std: list[float], opts: EvalOptions):
    """uint8 NHWC batch on any device -> float32 logits: normalised on the device, (x - mean*255) / (std*255),
    which for the release's config is Caffe's pixel - (123, 117, 104) exactly. Under ``--amp`` a model whose
    weights are already in the AMP dtype (cast once by ``runner.prepare_model``) gets its input cast to it;
    an fp32 model runs under autocast, which casts every weight again on every call."""
    device = opts.device
    mean255 = torch.tensor(np.asarray(mean, np.float64) * 255.0, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std255 = torch.tensor(np.asarray(std, np.float64) * 255.0, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    amp = AMP_DTYPES.get(opts.precision)
    cast = amp is not None and next(model.parameters()).dtype == amp
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp and not cast \
        else contextlib.nullcontext

    def forward(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # NCHW view, channels_last strides
        if not opts.channels_last:
            x = x.contiguous()
        x = x.sub_(mean255).div_(std255)
        if cast:
            x = x.to(amp)
        with autocast():
            return model(x).float()

    return forward


def _loader(evalset: EvalSet, prep: Preprocessing, opts: EvalOptions, dist: distributed.Dist, table: _Table,
            at: _Start):
    """This rank's batches (round-robin from the first not done): slices of the resident crops, or a
    DataLoader; None when it has none."""
    mine = list(range(at.done_batches + dist.rank, table.n_batches, dist.world_size))
    if not mine:
        return None
    if opts.resident is not None:
        return opts.resident.batches(mine, table.bsz)
    dataset = BatchDataset(evalset.reader, prep, table.bsz, cache=opts.cache)
    return make_loader(dataset, mine, opts.workers, opts.device.type == "cuda")


def _numerics_before_loop(opts: EvalOptions) -> dict:
    """What the loop will compute with: the flags as torch reports them now (exact mode refuses TF32 or
    reduced precision here), and a measured convolution against float64."""
    flags = numerics.read_flags()
    if opts.precision == "fp32":
        numerics.require_exact(flags)
    amp = AMP_DTYPES.get(opts.precision)
    probe = numerics.conv_probe(opts.device, amp, opts.channels_last) if opts.probe else None
    return {"flags_before_loop": flags, "conv_probe": probe}


def _loop(forward, loader, opts: EvalOptions, dist: distributed.Dist, table: _Table, at: _Start,
          sink: _LogitsSink, progress: Progress | None, reporter: "_Reporter", t0: float) -> None:
    """Every step: this rank's batch through the model, all ranks' top-5 and status gathered, then entered
    (on CUDA one step later, so the copy back overlaps the next step's compute). An interruption (Ctrl-C,
    SIGTERM) saves the steps entered so far."""
    committer = _Committer(opts, dist, table, at, sink, progress, reporter, t0)
    try:
        _steps(forward, loader, opts, dist, table, at, committer)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (cli raises it there): keep every step already entered
        committer.save()
        raise


def _steps(forward, loader, opts: EvalOptions, dist: distributed.Dist, table: _Table, at: _Start,
           committer: "_Committer") -> None:
    """``_loop``'s steps."""
    device, bsz, world = opts.device, table.bsz, dist.world_size
    n_steps = math.ceil((table.n_batches - at.done_batches) / world)
    pending = None
    pause = _pause_hook(dist)
    with torch.inference_mode():
        pause(0)
        it = DeviceFeed(start(loader), device) if loader is not None else None
        for step in range(n_steps):
            if step:
                pause(step)
            b = at.done_batches + step * world + dist.rank
            packed = torch.full((bsz, 6), STATUS_PAD, dtype=torch.int64, device=device)
            packed[:, :5] = 0
            logits_pad = torch.zeros((bsz, NUM_CLASSES), dtype=torch.float32, device=device) \
                if opts.save_logits else None
            if b < table.n_batches:
                k, images, st = it.take()
                assert k == b, (k, b)
                n = images.shape[0]
                if not committer.scan_only:
                    logits = forward(images)
                    packed[:n, :5] = logits.topk(5, dim=1).indices
                    if logits_pad is not None:
                        logits_pad[:n] = logits
                packed[:n, 5] = st.to(device, non_blocking=True).to(torch.int64)
                it.prefetch()  # waits for the next batch while the device computes this one
            gathered = torch.cat(distributed.all_gather(packed, dist))
            gathered_logits = torch.cat(distributed.all_gather(logits_pad, dist)) if logits_pad is not None else None
            event = None
            if device.type == "cuda":
                gathered = gathered.to("cpu", non_blocking=True)
                if gathered_logits is not None:
                    gathered_logits = gathered_logits.to("cpu", non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            if pending is not None:
                committer.commit(*pending)
            pending = (step, gathered, gathered_logits, event)
        if pending is not None:
            committer.commit(*pending)


def _pause_hook(dist: distributed.Dist) -> Callable[[int], None]:
    """``PAUSE_BEFORE_STEP_ENV``'s pause (a no-op without it)."""
    value = os.environ.get(PAUSE_BEFORE_STEP_ENV, "")
    if not value or not dist.is_main:
        return lambda step: None
    at, _, path = value.partition(":")

    def pause(step: int) -> None:
        if step != int(at):
            return
        open(path + ".waiting", "w").close()
        deadline = time.monotonic() + 600
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)

    return pause


class _Committer:
    """Enters one gathered step into the table, saves progress (rank 0: after the first step, then at most
    every ``SAVE_EVERY_S``) and decides whether inference can stop: once an image is bad and bad images are
    not skipped, the run will fail, so the remaining steps only look for the other bad images."""

    def __init__(self, opts: EvalOptions, dist: distributed.Dist, table: _Table, at: _Start, sink: _LogitsSink,
                 progress: Progress | None, reporter: "_Reporter", t0: float):
        self.opts, self.dist, self.table, self.at, self.sink = opts, dist, table, at, sink
        self.progress, self.reporter, self.t0 = progress, reporter, t0
        self.kill_after = int(os.environ.get(KILL_AFTER_STEPS_ENV, "0") or 0)
        self.save_every = float(os.environ.get(SAVE_EVERY_ENV, "") or SAVE_EVERY_S)
        self.scan_only = table.any_bad(at.resumed_from) and not opts.skip_bad_images
        self.finished = at.done_batches  # batches entered so far
        self.saved = at.done_batches     # ... and in the progress file
        self.last_save = None

    def commit(self, step: int, packed: torch.Tensor, logits: torch.Tensor | None, event) -> None:
        t, at, bsz, main = self.table, self.at, self.table.bsz, self.dist.is_main
        if event is not None:
            event.synchronize()
        packed = packed.numpy()
        new = 0
        for r in range(t.world):
            b = at.done_batches + step * t.world + r
            if b >= t.n_batches:
                continue
            first = b * bsz
            n = min(bsz, t.n_images - first)
            rows = packed[r * bsz:r * bsz + n]
            t.top5[first:first + n] = rows[:, :5]
            t.status[first:first + n] = rows[:, 5]
            new += n
            if logits is not None and main:
                self.sink.add(np.ascontiguousarray(logits[r * bsz:r * bsz + n].numpy(), dtype=np.float32))
        self.finished = min(at.done_batches + (step + 1) * t.world, t.n_batches)
        if t.any_bad(t.rows_of(self.finished)) and not self.opts.skip_bad_images:
            self.scan_only = True
        kill = main and self.kill_after and step + 1 >= self.kill_after
        if kill or self.last_save is None or time.monotonic() - self.last_save >= self.save_every:
            self.save()
        self.reporter.update(new)
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)

    def save(self) -> None:
        """The entered steps into the progress file (rank 0), unless a bad image ends the run anyway."""
        t = self.table
        if not self.dist.is_main or self.progress is None or self.finished == self.saved or (
                t.any_bad(t.rows_of(self.finished)) and not self.opts.skip_bad_images):
            return
        self.sink.sync()
        rows = t.rows_of(self.finished)
        # min: an interruption inside commit may have appended logits of a step not yet counted as finished
        self.progress.save(self.finished, rows, t.top5, t.status, self.at.prior_elapsed + time.perf_counter() - self.t0,
                           min(self.sink.rows, rows))
        self.saved, self.last_save = self.finished, time.monotonic()


def _outcome(evalset: EvalSet, opts: EvalOptions, dist: distributed.Dist, table: _Table, at: _Start,
             sink: _LogitsSink, progress: Progress | None, session: float, numerics_info: dict) -> Outcome:
    """The run's result; bad images end it here unless they are skipped."""
    assert not (table.status == STATUS_PAD).any(), "some images were not evaluated"
    bad = [evalset.names[i] for i in np.flatnonzero(table.status == STATUS_BAD)]
    if bad and not opts.skip_bad_images:
        shown = ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        raise SenetZooError(evalset.root, f"{len(bad)} unreadable or corrupt image{'s' if len(bad) > 1 else ''}: "
                            f"{shown} (pass --skip-bad-images to evaluate without them)")
    logits = sink.result(table.n_images) if opts.save_logits and dist.is_main else None
    return Outcome(top5=table.top5, status=table.status, logits=logits, wall_time_s=at.prior_elapsed + session,
                   session_time_s=session, session_images=table.n_images - at.resumed_from,
                   resumed_from=at.resumed_from, bad_names=bad, numerics=numerics_info)


# -------------------------------------------------------------------------------------------- reporting

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
