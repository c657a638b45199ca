"""One validation run, from parsed arguments to the printed table and the written record.

``run_validation(args)`` checks every input first (arguments, the output's folder, weights, data, labels),
then ``validate_one`` loads the model (folded, compiled where asked), opens the decode cache, evaluates and
writes the record; ``sweep.run_all`` calls ``validate_one`` per model and setting for ``--all``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import sys
from pathlib import Path

import numpy as np
import torch

from .. import __version__, registry
from ..errors import SenetZooError
from ..files import sha256_file
from . import distributed, metrics
from .data import load_eval_set
from .evaluate import EvalOptions, Progress, evaluate
from .numerics import set_numerics
from .preprocess import Preprocessing, resolve_resize
from .record import (FULL_VAL_IMAGES, REFERENCE_RUNTIME_PREFIX, SCHEMA, command_line, default_output, exit_code,
                     format_table, sibling, verdict, write_predictions, write_record)

__all__ = ["run_validation", "validate_one", "prepare_model", "set_numerics", "check_writable", "default_workers"]


def _check_args(args: argparse.Namespace) -> None:
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
        if args.model or args.weights or args.output or args.img_size:
            raise SenetZooError(None, "--all takes --weights-dir and --output-dir, not --model, --weights, "
                                "--output or --img-size")
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
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SenetZooError(folder, f"cannot write the record here ({e.strerror or e})") from None


def default_workers(device: torch.device) -> int:
    """This process's share of the CPU cores (torchrun: divided by the processes on the node); on CUDA all
    of it but one (the main process feeds the GPU), on the CPU at most 8 (the model needs the cores too)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    share = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))
    return max(1, share - 1) if device.type == "cuda" else min(8, share)


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


def fetch_default_weights(name: str) -> Path:
    try:
        from ..hub.download import fetch_weights
    except ImportError:
        raise SenetZooError(None, "no --weights given and the Hub download is unavailable: pass --weights "
                            "out/MODEL (senet-zoo convert --output)") from None
    return Path(fetch_weights(name))


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


def run_validation(args: argparse.Namespace) -> int:
    _check_args(args)
    rank = distributed.env_rank()
    log = print if rank == 0 else (lambda *a, **k: None)
    device = resolve_device(args.device)
    precision = args.amp or "fp32"
    numerics = set_numerics(precision)

    # Bad input first, before anything slow: where the records go, weights, data, labels, ReaL labels.
    if args.all:
        from .sweep import find_models

        check_writable(args.output_dir or Path("runs"))
        jobs = find_models(args.weights_dir)
    else:
        ckpt = registry.get(args.model)
        if args.output is None:
            from ..models.config import pretrained_cfg

            size = int(args.img_size or pretrained_cfg(ckpt)["input_size"][-1])
            args.output = default_output(args.model, size, args.preprocess, precision, args.limit)
        check_writable(args.output.parent)
        if args.weights is not None:
            from ..models.factory import resolve_weights

            resolve_weights(args.weights)
    cache = getattr(args, "cache", None)  # --cache DIR (decode cache) also keeps the tar indexes
    evalset = load_eval_set(args.data, args.labels, args.label_format, args.limit,
                            index_dir=Path(cache) / "tar-index" if cache else None,
                            ground_truth=not args.expect_agreement)
    real = metrics.load_real_labels(args.real_labels or None) if args.real_labels is not None else None

    dist = distributed.setup(device.type)
    try:
        if device.type == "cuda" and dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if args.all:
            from .sweep import run_all

            return run_all(args, jobs, device, precision, numerics, evalset, real, dist, log)
        return validate_one(args, device, precision, numerics, evalset, real, dist, log)[0]
    finally:
        distributed.teardown(dist)


def open_cache(root: Path | None, evalset, prep: Preprocessing, dist: distributed.Dist, log):
    """The decode cache for this preprocessing (rank 0 builds or checks it, the other ranks then map it)."""
    if root is None:
        return None
    from .cache import DecodeCache

    cache = None
    problem = None
    if dist.is_main:
        try:
            cache = DecodeCache.open(root, evalset.reader, prep, create=True, log=log)
        except SenetZooError as e:
            problem = (e.path, e.message)
    problem = distributed.broadcast_object(problem, dist)
    if problem is not None:
        raise SenetZooError(*problem)
    if not dist.is_main:
        cache = DecodeCache.open(root, evalset.reader, prep, create=False, log=log)
    if dist.is_main:
        state = "reused" if cache.reused else "new"
        log(f"decode cache {cache.folder} ({state}): {cache.stored_at_start:,} of {cache.n:,} images stored"
            + (f", {len(cache.checked)} re-decoded and equal" if cache.checked else ""))
    return cache


def prepare_model(model: torch.nn.Module, device: torch.device, precision: str, channels_last: bool | None = None,
                  compile: bool = False, fold: bool = True) -> tuple[torch.nn.Module, bool, int, bool]:
    """(the model as validate runs it, channels_last, BatchNorms folded, compiled): BatchNorm folded into the
    convolutions (tests/test_fold.py holds it to the unfolded outputs), on the device, in its memory format.
    Also what ``benchmarks/validate.py`` measures, so the benchmark runs the command's model."""
    from ..models.fold import fold_batchnorm

    # channels_last: faster on the CPU (oneDNN's blocked convolutions, 1.3x measured for SE-ResNet-50) and
    # with --amp on CUDA (tensor cores); exact fp32 on CUDA keeps NCHW, cuDNN's reference layout.
    if channels_last is None:
        channels_last = device.type == "cpu" or precision != "fp32"
    model, folded = fold_batchnorm(model, inplace=True) if fold else (model, 0)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    compiled = compile and device.type == "cuda"
    if compiled:
        # static shapes: every batch is padded to --batch-size, so one graph serves the whole run
        model = torch.compile(model, dynamic=False)
    return model, channels_last, folded, compiled


def validate_one(args, device, precision, numerics, evalset, real, dist, log) -> tuple[int, dict | None]:
    """(exit code, the record (rank 0) or None) of one model at one setting; ``args.output`` is set."""
    ckpt = registry.get(args.model)
    made: list[Progress] = []
    try:
        return _run(args, ckpt, device, precision, numerics, evalset, real, dist, log, args.output, made)
    except KeyboardInterrupt:
        raise  # an interruption keeps its progress file: --resume continues from it
    except BaseException:
        # Any other failure is not resumable as such (bad images, a refused precision, a crash): remove the
        # progress this run wrote. A progress file that could not be resumed (other settings) is untouched.
        for progress in made:
            if progress.owned:
                progress.remove()
        raise


def _run(args, ckpt, device, precision, numerics, evalset, real, dist, log, output,
         made: list[Progress]) -> tuple[int, dict | None]:
    from .. import create_model
    from ..models.factory import resolve_weights

    main = dist.is_main
    weights_arg = args.weights if args.weights is not None else fetch_default_weights(args.model)
    weights_file, _config = resolve_weights(weights_arg)
    model = create_model(args.model, pretrained=str(weights_arg))
    cfg = model.pretrained_cfg
    img_size = int(args.img_size or cfg["input_size"][-1])
    setting = ckpt.eval_setting(img_size)
    resize, rule = resolve_resize(setting.resize if setting else None, img_size, float(cfg.get("crop_pct", 0.875)))
    prep = Preprocessing(args.preprocess, resize, img_size, rule)
    mean, std = [float(m) for m in cfg["mean"]], [float(s) for s in cfg["std"]]

    if args.expect_agreement:
        published = {"top1_err": 0.0, "top5_err": 0.0, "img_size": img_size,
                     "source": f"{REFERENCE_RUNTIME_PREFIX}{args.expect_agreement} top-1 predictions "
                               "(expected: full agreement)"}
    else:
        p = ckpt.published_for(img_size)
        published = None if p is None else {"top1_err": p.top1_err, "top5_err": p.top5_err, "img_size": p.img_size,
                                            "source": p.source}
    predictions_path = sibling(output, ".npz")

    model, channels_last, folded, compiled = prepare_model(model, device, precision, args.channels_last,
                                                           bool(getattr(args, "compile", False)),
                                                           fold=getattr(args, "fold_bn", True))
    workers = args.workers if args.workers is not None else default_workers(device)
    cache = open_cache(getattr(args, "cache", None), evalset, prep, dist, log)
    opts = EvalOptions(device=device, precision=precision, batch_size=args.batch_size, workers=workers,
                       channels_last=channels_last, skip_bad_images=args.skip_bad_images,
                       save_logits=args.save_logits, show_progress=not args.no_progress, cache=cache)

    weights_sha256 = sha256_file(weights_file) if main else None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    progress = None
    if main:
        import cv2

        key = {"model": args.model, "weights_sha256": weights_sha256, "file_list_sha256": evalset.file_list_sha256(),
               "labels_sha256": evalset.labels_sha256(), "preprocess": [prep.name, prep.resize, prep.crop],
               "mean": mean, "std": std, "precision": precision, "batch_size": args.batch_size,
               "device": device.type, "gpu": gpu, "channels_last": channels_last, "save_logits": args.save_logits,
               "torch": torch.__version__, "opencv": cv2.__version__, "bn_folded": folded, "compiled": compiled}
        progress = Progress(sibling(output, ".progress.npz"), key)
        made.append(progress)

    log(f"{ckpt.display_name}: {len(evalset):,} images ({evalset.layout}, {evalset.root}), {prep.name} "
        f"preprocessing {resize} -> {img_size}, {precision}, {device}"
        f"{f' x{dist.world_size} processes' if dist.enabled else ''}, batch {args.batch_size}, {workers} workers"
        f"{', BatchNorm folded' if folded else ''}{', compiled' if compiled else ''}")
    outcome = evaluate(model, evalset, prep, mean, std, opts, dist, progress, args.resume, log)

    ok = outcome.status == 1
    names = [n for n, good in zip(evalset.names, ok) if good]
    labels, top5 = evalset.labels[ok], outcome.top5[ok]
    if len(labels) == 0:
        raise SenetZooError(evalset.root, "no image could be evaluated (all were unreadable)")
    errs = metrics.error_summary(top5, labels)
    v = verdict(errs["top1_err"], errs["top5_err"], published, ckpt.tolerance_pp)
    if not main:
        return exit_code(v), None

    results = {"num_images": int(len(labels)), "num_bad_images": len(outcome.bad_names),
               "bad_images": outcome.bad_names, **errs}
    if real is not None:
        results["real"] = metrics.real_accuracy(names, top5, *real)
    notes = []
    if published and not args.expect_agreement:
        if len(labels) != FULL_VAL_IMAGES:
            notes.append(f"covers {len(labels):,} images; the published numbers are for all "
                         f"{FULL_VAL_IMAGES:,} ILSVRC2012 validation images")
        if prep.name != "caffe":
            notes.append("PIL preprocessing, not the release's Caffe pipeline the numbers were published with")
        if precision != "fp32":
            notes.append(f"mixed precision ({precision}), not exact fp32")
    if outcome.bad_names:
        notes.append(f"{len(outcome.bad_names)} unreadable image(s) skipped")

    pred_sha = write_predictions(predictions_path, names, labels, top5, outcome.logits[ok] if outcome.logits is not None else None)
    meta = getattr(model, "weights_metadata", {}) or {}
    record = {
        "schema": SCHEMA,
        "model": args.model,
        "display_name": ckpt.display_name,
        "weights": {"path": str(Path(weights_arg).resolve()), "file": str(weights_file.resolve()),
                    "sha256": weights_sha256, "converter_version": meta.get("converter_version"),
                    "source_sha256": meta.get("source_sha256")},
        "data": data_section(evalset, cache),
        "preprocess": prep.describe(mean, std),
        "img_size": img_size,
        "precision": precision,
        "environment": environment(device, dist.world_size, numerics),
        # exact mode's evidence: the precision flags as torch reported them just before the loop, and the
        # relative error of a convolution on this device against float64 (fp32 ~1e-6, TF32 ~1e-3)
        "numerics": outcome.numerics,
        "run": {"batch_size": args.batch_size, "workers": opts.workers, "channels_last": channels_last,
                "bn_folded": folded, "compiled": compiled,
                "resumed_from_image": outcome.resumed_from, "skip_bad_images": args.skip_bad_images,
                "batches": "fixed batches of batch_size images in name order, round-robin over processes; "
                           "the last one padded to batch_size (padding rows dropped)"},
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
        "command": command_line(args, dist.world_size),
    }
    write_record(output, record)
    if progress is not None:
        progress.remove()
    log("")
    log(format_table(record))
    log(f"record: {output}  (predictions: {predictions_path})")
    sys.stdout.flush()
    return exit_code(v), record


def data_section(evalset, cache=None) -> dict:
    """The record's ``data``: which images, labelled how, read from where."""
    return {"path": str(Path(evalset.root).resolve()), "layout": evalset.layout, "num_images": len(evalset),
            "num_found": evalset.num_found, "limit": evalset.limit,
            "subset_rule": "the N smallest sha256(base name), in name order" if evalset.limit else None,
            "label_source": evalset.label_source, "labels_sha256": evalset.labels_sha256(),
            "file_list_sha256": evalset.file_list_sha256(),
            "source": evalset.source_kind, "source_uri": evalset.source_uri,
            "member_list_sha256": evalset.member_list_sha256(),
            "decode_cache": cache.describe() if cache is not None else None}
