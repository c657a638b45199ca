"""What every ``validate`` run sets up before its first model: the arguments checked, the device and its
numerics, the evaluation set and labels, and the torchrun process group.

Bad input is found here, before anything slow: the caller's own checks (``check_inputs``: where the records
go, which weights) run after the arguments and before the images are listed. A single run (``runner``) and
``--all`` (``sweep``) open the same session; neither imports the other.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..errors import SenetZooError
from . import distributed, metrics
from .data import EvalSet, load_eval_set
from .numerics import set_numerics
from .resident import ResidentStore


@dataclass
class Session:
    device: torch.device
    precision: str                   # fp32 | bf16 | fp16
    numerics: dict                   # the precision flags as set (numerics.set_numerics)
    evalset: EvalSet
    real: tuple | None               # ReaL labels (metrics.load_real_labels) or None
    dist: distributed.Dist
    log: Callable[..., None]         # print on rank 0, silent elsewhere
    resident: ResidentStore = field(default_factory=ResidentStore)  # a filled cache's crops, kept across runs


def check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise SenetZooError(None, f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise SenetZooError(None, f"--workers must be 0 or more, got {args.workers}")
    if args.img_size is not None and args.img_size < 8:
        raise SenetZooError(None, f"--img-size must be at least 8, got {args.img_size}")
    if args.limit is not None and args.limit < 1:
        raise SenetZooError(None, f"--limit must be at least 1, got {args.limit}")
    if args.output is not None and args.output.is_dir():
        raise SenetZooError(args.output, "is a directory; --output names the record file (e.g. runs/x.json)")
    if getattr(args, "all", False):
        if args.model or args.weights or args.output or args.img_size or getattr(args, "timm_weights", None):
            raise SenetZooError(None, "--all takes --weights-dir and --output-dir, not --model, --weights, "
                                "--timm-weights, --output or --img-size")
        if args.weights_dir is None:
            raise SenetZooError(None, "--all needs --weights-dir DIR (the parent folder convert --all wrote)")
    elif not args.model:
        raise SenetZooError(None, "validate needs --model NAME (or --all --weights-dir DIR)")
    elif getattr(args, "weights_dir", None) is not None or getattr(args, "output_dir", None) is not None:
        raise SenetZooError(None, "--weights-dir and --output-dir go with --all")
    if getattr(args, "compile", False) and (args.device or "cuda") == "cpu":
        raise SenetZooError(None, "--compile is for CUDA only (on the CPU it does not pay)")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before anything slow runs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SenetZooError(folder, f"cannot write the record here ({e.strerror or e})") from None


def resolve_device(requested: str | None) -> torch.device:
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise SenetZooError(None, f"--device {requested}: not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SenetZooError(None, f"--device {requested}: CUDA is not available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SenetZooError(None, f"--device {requested}: only {torch.cuda.device_count()} GPU(s)")
    elif device.type != "cpu":
        raise SenetZooError(None, f"--device {requested}: only cpu and cuda are supported")
    return device


@contextlib.contextmanager
def session(args: argparse.Namespace, check_inputs: Callable[[str], None]) -> Iterator[Session]:
    """The session of one ``validate`` command; ``check_inputs(precision)`` is the caller's bad-input check."""
    check_args(args)
    log = print if distributed.env_rank() == 0 else (lambda *a, **k: None)
    device = resolve_device(args.device)
    precision = args.amp or "fp32"
    numerics = set_numerics(precision)
    check_inputs(precision)
    cache = getattr(args, "cache", None)  # --cache DIR (decode cache) also keeps the tar indexes
    evalset = load_eval_set(args.data, args.labels, args.label_format, args.limit,
                            index_dir=Path(cache) / "tar-index" if cache else None,
                            ground_truth=not args.expect_agreement)
    for note in evalset.notes:  # what was read of --data, and how it was checked
        log(f"data: {note}")
    real = metrics.load_real_labels(args.real_labels or None) if args.real_labels is not None else None

    dist = distributed.setup(device.type)
    try:
        if device.type == "cuda" and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        yield Session(device, precision, numerics, evalset, real, dist, log)
    finally:
        distributed.teardown(dist)
