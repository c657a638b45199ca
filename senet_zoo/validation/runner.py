"""One validation run: a model at one setting, from the weights to the printed table and the written record.

``run_validation(args)`` opens the session (``session.py``: arguments, device, images and labels checked
first) and runs ``validate_one``, which reads as the procedure: the model and its preprocessing
(``_load``), the published numbers it is held to (``_published``), the model as it runs and the loop's
options (``_prepare``), the progress file (``_progress``), the evaluation, the scores and verdict
(``_score``), and the record (``_record``). ``sweep.run_sweep`` calls ``validate_one`` per model and setting
for ``--all``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import host, registry
from ..version import __version__
from ..errors import SenetZooError
from ..files import sha256_file
from ..images.preprocess import Preprocessing, resolve_resize
from ..models.config import pretrained_cfg
from ..models.factory import create_model
from ..models.fold import fold_batchnorm
from ..weights.download import fetch_weights
from ..weights.folder import resolve_weights
from . import distributed, metrics
from .cache import STORED, CacheUnavailable, DecodeCache, cache_key
from .evaluate import EvalOptions, Outcome, evaluate
from .progress import Progress
from .resident import ResidentCrops
from .record import (FULL_VAL_IMAGES, REFERENCE_RUNTIME_PREFIX, SCHEMA, command_line, default_output, exit_code,
                     format_table, sibling, verdict, verdict_line, write_predictions, write_record)
from .session import Session, check_writable, session

__all__ = ["run_validation", "validate_one", "prepare_model", "default_workers"]


def default_workers(device: torch.device) -> int:
    """This process's share of the usable cores (affinity capped by the container's CPU quota; torchrun:
    divided by the processes on the node); on CUDA all of it but one (the main process feeds the GPU), on
    the CPU at most 8 (the model needs the cores too)."""
    cores = host.usable_cpus()
    share = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    return max(1, share - 1) if device.type == "cuda" else min(8, share)


def run_validation(args: argparse.Namespace) -> int:
    """``validate --model NAME``: one model at one setting."""
    def check_inputs(precision: str) -> None:
        ckpt = registry.get(args.model)
        timm = check_timm_weights(args, ckpt)
        if args.output is None:
            size = int(args.img_size or pretrained_cfg(ckpt)["input_size"][-1])
            args.output = default_output(args.model, size, args.preprocess, precision, args.limit)
            if timm:
                args.output = sibling(args.output, "-timm.json")
        check_writable(args.output.parent)
        if args.weights is not None:
            resolve_weights(args.weights)

    with session(args, check_inputs) as s:
        rc, record = validate_one(args, s)
        return distributed.exit_status(rc, s.dist, record and verdict_line(record, args.output))


def environment(device: torch.device, world_size: int, numerics: dict) -> dict:
    import cv2
    import PIL

    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "senet_zoo": __version__,
        "world_size": world_size,
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        **numerics,
    }


def open_cache(root: Path | None, evalset, prep: Preprocessing, dist: distributed.Dist,
               log) -> tuple[DecodeCache | None, str | None]:
    """(the decode cache for this preprocessing, or None; why it is not used, or None). Rank 0 opens (or
    builds) this key's folder; the other ranks then attach to exactly that folder."""
    if root is None:
        return None, None
    cache, folder, unused, problem = None, None, None, None
    if dist.is_main:
        try:
            cache = DecodeCache.open(root, evalset.reader, prep, log=log)
            folder = str(cache.folder)
        except CacheUnavailable as e:
            unused = str(e)
        except SenetZooError as e:
            problem = (e.path, e.message)
    problem, folder, unused = distributed.broadcast_object((problem, folder, unused), dist)
    if problem is not None:
        raise SenetZooError(*problem)
    if unused is not None:
        log(f"decode cache {root}: not used, {unused}; carrying on without it")
        return None, unused
    if not dist.is_main:
        cache = DecodeCache.attach(folder, cache_key(evalset.reader, prep), prep.crop)
    if dist.is_main:
        state = "reused" if cache.reused else "new"
        log(f"decode cache {cache.folder} ({state}{'' if cache.writable or cache.complete else ', read-only'}): "
            f"{cache.stored_at_start:,} of {cache.n:,} images stored"
            + (f", {len(cache.checked)} re-decoded and equal" if cache.checked else "")
            + ("" if cache.writable or cache.complete else
               f"; the other {cache.n - cache.stored_at_start:,} are decoded and not stored"))
    return cache, None


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str, channels_last: bool | None = None,
                  compile: bool = False, fold: bool = True) -> tuple[torch.nn.Module, bool, int, bool]:
    """(the model as validate runs it, channels_last, BatchNorms folded, compiled): BatchNorm folded into the
    convolutions (tests/test_fold.py holds it to the unfolded outputs), under ``--amp bf16`` cast to bf16
    once, on the device, in its memory format. Also what ``benchmarks/validate.py`` measures, so the
    benchmark runs the command's model."""
    # channels_last: faster on the CPU (oneDNN's blocked convolutions, 1.3x measured for SE-ResNet-50) and
    # with --amp on CUDA (tensor cores); exact fp32 on CUDA keeps NCHW, cuDNN's reference layout.
    if channels_last is None:
        channels_last = device.type == "cpu" or precision != "fp32"
    model, folded = fold_batchnorm(model, inplace=True) if fold else (model, 0)
    if precision == "bf16" and fold:
        # Once, instead of autocast casting every weight again on every batch: the same arithmetic (bf16
        # convolutions on bf16 weights, bf16 activations), logits equal to autocast's bit for bit on the CPU
        # (benchmarks/amp_cast.py, docs/validation.md). fp16 and unfolded BatchNorm keep autocast.
        model = model.to(torch.bfloat16)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    compiled = compile and device.type == "cuda"
    if compiled:
        # static shapes: every batch is padded to --batch-size, so one graph serves the whole run
        model = torch.compile(model, dynamic=False)
    return model, channels_last, folded, compiled


def validate_one(args: argparse.Namespace, s: Session) -> tuple[int, dict | None]:
    """(exit code, the record (rank 0) or None) of one model at one setting; ``args.output`` is set."""
    made: list[Progress] = []
    try:
        return _run(args, registry.get(args.model), s, args.output, made)
    except KeyboardInterrupt:
        raise  # an interruption keeps its progress file: --resume continues from it
    except BaseException:
        # Any other failure is not resumable as such (bad images, a refused precision, a crash): remove the
        # progress this run wrote. A progress file that could not be resumed (other settings) is untouched.
        for progress in made:
            if progress.owned:
                progress.remove()
        raise


@dataclass
class _Loaded:
    """The model of this run with everything its weights decide: where they are, the input it wants."""
    model: torch.nn.Module
    weights_arg: Path
    weights_file: Path
    img_size: int
    prep: Preprocessing
    mean: list[float]
    std: list[float]
    origin: dict | None = None       # what the record's weights section adds (timm's port: which weights)


def _run(args, ckpt: registry.Checkpoint, s: Session, output: Path, made: list[Progress]) -> tuple[int, dict | None]:
    run = _load_timm(args, ckpt) if getattr(args, "timm_weights", None) else _load(args, ckpt)
    published = _published(args, ckpt, run.img_size)
    model, opts, prepared = _prepare(args, run, s)
    try:
        weights_sha256 = sha256_file(run.weights_file) if s.dist.is_main else None
        progress = _progress(args, run, opts, prepared, s, output, weights_sha256)
        if progress is not None:
            made.append(progress)
        feed = f"batches from the decode cache in {opts.resident.where}" if opts.resident else \
            f"{opts.workers} workers"
        s.log(f"{ckpt.display_name}: {len(s.evalset):,} images ({s.evalset.layout}, {s.evalset.root}), {run.prep.name} "
              f"preprocessing {run.prep.resize} -> {run.img_size}, {s.precision}, {s.device}"
              f"{f' x{s.dist.world_size} processes' if s.dist.enabled else ''}, batch {opts.batch_size}, {feed}"
              f"{', BatchNorm folded' if prepared['bn_folded'] else ''}"
              f"{', compiled' if prepared['compiled'] else ''}")
        outcome = evaluate(model, s.evalset, run.prep, run.mean, run.std, opts, s.dist, progress, args.resume, s.log)
        ok, errs, v = _score(outcome, s, published, ckpt)
        if not s.dist.is_main:
            return exit_code(v), None
        record = _record(args, ckpt, s, run, opts, prepared, outcome, ok, errs, v, published, weights_sha256, output)
        if progress is not None:
            progress.remove()
        s.log("")
        s.log(format_table(record))
        s.log(f"record: {output}  (predictions: {sibling(output, '.npz')})")
        sys.stdout.flush()
        return exit_code(v), record
    finally:
        if opts.cache is not None:
            opts.cache.close()  # this run's hold on its cache folder (a later run may then tidy it away)


def _load(args, ckpt: registry.Checkpoint) -> _Loaded:
    """The weights (``--weights``, else the verified Hub download), the model, and the preprocessing its
    config and the registry's evaluation setting ask for."""
    weights_arg = Path(args.weights) if args.weights is not None else fetch_weights(args.model)
    weights_file, _config = resolve_weights(weights_arg)
    return _setting(args, ckpt, create_model(args.model, pretrained=str(weights_arg)), weights_arg, weights_file)


def check_timm_weights(args, ckpt: registry.Checkpoint) -> bool:
    """Whether this run evaluates timm's port (``--timm-weights``); refuses what cannot go with it."""
    if not getattr(args, "timm_weights", None):
        return False
    if args.weights is not None:
        raise SenetZooError(None, "--timm-weights evaluates timm's weights: it does not go with --weights")
    if ckpt.timm_architecture is None:
        raise SenetZooError(None, f"{ckpt.name}: timm has no {ckpt.display_name} weights (--timm-weights)")
    if args.expect_agreement:
        raise SenetZooError(None, "--timm-weights is compared with the published errors, not --expect-agreement")
    return True


def _load_timm(args, ckpt: registry.Checkpoint) -> _Loaded:
    """timm's port instead of our conversion: its weights in our architecture (timm's legacy_se* module names)
    with its own normalisation (timm's mean/std), the rest of the run unchanged."""
    from ..timm_weights.checkpoint import open_checkpoint
    from ..timm_weights.model import timm_model

    port = open_checkpoint(args.timm_weights)
    run = _setting(args, ckpt, timm_model(args.model, port), port.file, port.file)
    run.origin = {"origin": "timm", "timm_weights": port.source, "normalisation_from": port.normalisation_from}
    return run


def _setting(args, ckpt: registry.Checkpoint, model: torch.nn.Module, weights_arg: Path,
             weights_file: Path) -> _Loaded:
    """A loaded model with the preprocessing its config and the registry's evaluation setting ask for."""
    cfg = model.pretrained_cfg
    img_size = int(args.img_size or cfg["input_size"][-1])
    setting = ckpt.eval_setting(img_size)
    resize, rule = resolve_resize(setting.resize if setting else None, img_size, float(cfg.get("crop_pct", 0.875)))
    return _Loaded(model, weights_arg, weights_file, img_size, Preprocessing(args.preprocess, resize, img_size, rule),
                   [float(m) for m in cfg["mean"]], [float(x) for x in cfg["std"]])


def _published(args, ckpt: registry.Checkpoint, img_size: int) -> dict | None:
    """The numbers this run is held to: the registry's published errors, or full agreement with another
    runtime's predictions (``--expect-agreement``)."""
    if args.expect_agreement:
        return {"top1_err": 0.0, "top5_err": 0.0, "img_size": img_size,
                "source": f"{REFERENCE_RUNTIME_PREFIX}{args.expect_agreement} top-1 predictions "
                          "(expected: full agreement)"}
    p = ckpt.published_for(img_size)
    return None if p is None else {"top1_err": p.top1_err, "top5_err": p.top5_err, "img_size": p.img_size,
                                   "source": p.source}


def _prepare(args, run: _Loaded, s: Session) -> tuple[torch.nn.Module, EvalOptions, dict]:
    """(the model as it runs, the loop's options, what was done to the model: for the key and the record)."""
    model, channels_last, folded, compiled = prepare_model(run.model, s.device, s.precision, args.channels_last,
                                                           bool(getattr(args, "compile", False)),
                                                           fold=getattr(args, "fold_bn", True))
    workers = args.workers if args.workers is not None else default_workers(s.device)
    cache, cache_unused = open_cache(getattr(args, "cache", None), s.evalset, run.prep, s.dist, s.log)
    # A set smaller than one batch is one batch of exactly its images: padding 3 images to 128 cost 2.5 GB and
    # 3.5x the time on the CPU. Its numbers are those of --batch-size N (recorded as the batch size used).
    batch_size = min(args.batch_size, len(s.evalset))
    resident = None
    if cache is not None and cache.complete:  # nothing left to decode: batches are slices of the whole set
        resident = s.resident.get((str(cache.folder), str(s.device)), lambda: ResidentCrops.load(
            cache.images, cache.status == STORED, s.device, s.log))
    opts = EvalOptions(device=s.device, precision=s.precision, batch_size=batch_size, workers=workers,
                       channels_last=channels_last, skip_bad_images=args.skip_bad_images,
                       save_logits=args.save_logits, show_progress=not args.no_progress, cache=cache,
                       resident=resident)
    weights_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return model, opts, {"channels_last": channels_last, "bn_folded": folded, "compiled": compiled,
                         "weights_dtype": weights_dtype, "cache_unused": cache_unused}


def _progress(args, run: _Loaded, opts: EvalOptions, prepared: dict, s: Session, output: Path,
              weights_sha256: str | None) -> Progress | None:
    """Rank 0's progress file, keyed by everything that changes a prediction or what is stored."""
    if not s.dist.is_main:
        return None
    import cv2

    gpu = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else None
    key = {"model": args.model, "weights_sha256": weights_sha256, "file_list_sha256": s.evalset.file_list_sha256(),
           "labels_sha256": s.evalset.labels_sha256(), "preprocess": [run.prep.name, run.prep.resize, run.prep.crop],
           "mean": run.mean, "std": run.std, "precision": s.precision, "batch_size": opts.batch_size,
           "device": s.device.type, "gpu": gpu, "channels_last": prepared["channels_last"],
           "save_logits": args.save_logits, "torch": torch.__version__, "opencv": cv2.__version__,
           "bn_folded": prepared["bn_folded"], "compiled": prepared["compiled"],
           "weights_dtype": prepared["weights_dtype"]}
    return Progress(sibling(output, ".progress.npz"), key)


def _score(outcome: Outcome, s: Session, published: dict | None,
           ckpt: registry.Checkpoint) -> tuple[np.ndarray, dict, str]:
    """(which images were evaluated, their errors with intervals, the verdict against ``published``)."""
    ok = outcome.status == 1
    labels, top5 = s.evalset.labels[ok], outcome.top5[ok]
    if len(labels) == 0:
        raise SenetZooError(s.evalset.root, "no image could be evaluated (all were unreadable)")
    errs = metrics.error_summary(top5, labels)
    return ok, errs, verdict(errs["top1_err"], errs["top5_err"], published, ckpt.tolerance_pp)


def _protocol_notes(args, run: _Loaded, s: Session, outcome: Outcome, n_evaluated: int,
                    published: dict | None) -> list[str]:
    """Why this run is not the published protocol, if it is not (empty: it is)."""
    notes = []
    if published and not args.expect_agreement:
        if n_evaluated != FULL_VAL_IMAGES:
            notes.append(f"covers {n_evaluated:,} images; the published numbers are for all "
                         f"{FULL_VAL_IMAGES:,} ILSVRC2012 validation images")
        if run.prep.name != "caffe":
            notes.append("PIL preprocessing, not the release's Caffe pipeline the numbers were published with")
        if s.precision != "fp32":
            notes.append(f"mixed precision ({s.precision}), not exact fp32")
    if outcome.bad_names:
        notes.append(f"{len(outcome.bad_names)} unreadable image(s) skipped")
    return notes


def _record(args, ckpt: registry.Checkpoint, s: Session, run: _Loaded, opts: EvalOptions, prepared: dict,
            outcome: Outcome, ok: np.ndarray, errs: dict, v: str, published: dict | None,
            weights_sha256: str | None, output: Path) -> dict:
    """Writes the predictions and the record (atomically) and returns the record."""
    names = [n for n, good in zip(s.evalset.names, ok) if good]
    labels, top5 = s.evalset.labels[ok], outcome.top5[ok]
    results = {"num_images": int(len(labels)), "num_bad_images": len(outcome.bad_names),
               "bad_images": outcome.bad_names, **errs}
    if s.real is not None:
        results["real"] = metrics.real_accuracy(names, top5, *s.real)
    notes = _protocol_notes(args, run, s, outcome, len(labels), published)
    predictions_path = sibling(output, ".npz")
    pred_sha = write_predictions(predictions_path, names, labels, top5,
                                 outcome.logits[ok] if outcome.logits is not None else None)
    meta = getattr(run.model, "weights_metadata", {}) or {}
    record = {
        "schema": SCHEMA,
        "model": args.model,
        "display_name": ckpt.display_name,
        "weights": {"path": str(Path(run.weights_arg).resolve()), "file": str(run.weights_file.resolve()),
                    "sha256": weights_sha256, "converter_version": meta.get("converter_version"),
                    "source_sha256": meta.get("source_sha256"), **(run.origin or {})},
        "data": data_section(s.evalset, opts.cache, prepared["cache_unused"], opts.resident),
        "preprocess": run.prep.describe(run.mean, run.std),
        "img_size": run.img_size,
        "precision": s.precision,
        "environment": environment(s.device, s.dist.world_size, s.numerics),
        # exact mode's evidence: the precision flags as torch reported them just before the loop, and the
        # relative error of a convolution on this device against float64 (fp32 ~1e-6, TF32 ~1e-3)
        "numerics": outcome.numerics,
        "run": {"batch_size": opts.batch_size, "workers": opts.workers, "channels_last": prepared["channels_last"],
                "bn_folded": prepared["bn_folded"], "compiled": prepared["compiled"],
                "weights_dtype": prepared["weights_dtype"], "resumed_from_image": outcome.resumed_from,
                "skip_bad_images": args.skip_bad_images,
                "batches": "fixed batches of batch_size images in name order, round-robin over processes; "
                           "the last one padded to batch_size (padding rows dropped); a set smaller than "
                           "--batch-size is one batch of exactly its images"},
        "results": results,
        "published": published,
        "delta": None if not published else {"top1_err": round(errs["top1_err"] - published["top1_err"], 6),
                                              "top5_err": round(errs["top5_err"] - published["top5_err"], 6)},
        "tolerance_pp": ckpt.tolerance_pp,
        "verdict": v,
        # whether this run is the published protocol (None: no published numbers of the registry to match)
        "protocol": {"matches_published": (not notes) if published and not args.expect_agreement else None,
                     "notes": notes},
        "predictions": {"file": predictions_path.name, "sha256": pred_sha, "logits": outcome.logits is not None},
        "wall_time_s": outcome.wall_time_s,
        "images_per_s": outcome.session_images / outcome.session_time_s if outcome.session_time_s > 0 else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(args, s.dist.world_size),
    }
    write_record(output, record)
    return record


def data_section(evalset, cache=None, cache_unused: str | None = None, resident=None) -> dict:
    """The record's ``data``: which images, labelled how, read from where (``decode_cache``: the folder
    used and where its crops were resident, or None when workers copied them from its files; ``{"unused":
    why}`` when ``--cache`` could not be used, None without ``--cache``)."""
    return {"path": str(Path(evalset.root).resolve()), "layout": evalset.layout, "num_images": len(evalset),
            "num_found": evalset.num_found, "limit": evalset.limit,
            "subset_rule": "the N smallest sha256(base name), in name order" if evalset.limit else None,
            "label_source": evalset.label_source, "labels_sha256": evalset.labels_sha256(),
            "file_list_sha256": evalset.file_list_sha256(),
            "source": evalset.source_kind, "source_uri": evalset.source_uri,
            "member_list_sha256": evalset.member_list_sha256(), "notes": list(evalset.notes),
            "decode_cache": {**cache.describe(), "resident": resident.where if resident else None}
            if cache is not None else
            ({"unused": cache_unused} if cache_unused else None)}
