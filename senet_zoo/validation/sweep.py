"""``validate --all --weights-dir OUT``: every converted model, at every registry evaluation setting, in one go.

``OUT`` is what ``convert --all --output-root OUT`` writes: ``OUT/<registry name>/model.safetensors``. Each
model is validated at each of its registry settings (SENet-154: 224 and 320), one record each in
``--output-dir`` (default ``runs/``) under the single run's default name (``senet154-224.json``), all sharing
the images, the labels and ``--cache`` (the six models at 224 read one cache folder, SENet-154 at 320 its
own). Resumable like a single run: a setting whose record is already there for the same weights, images,
labels, preprocessing and precision is not run again, and an interrupted setting continues from its
progress file. Ends with one table (published vs ours, 95% interval, verdict) and ``summary.json``; exit 0
only if every setting is REPRODUCED.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from .. import jsonio, registry
from ..errors import SenetZooError
from ..files import atomic_write_text, sha256_file
from ..weights.folder import WEIGHTS_FILE, resolve_weights
from . import distributed
from .record import REPRODUCED, default_output, sibling
from .runner import validate_one
from .session import Session, check_writable, session


def run_sweep(args: argparse.Namespace) -> int:
    """``validate --all``: every model found in ``--weights-dir`` at every setting, then the summary."""
    jobs: list[tuple[str, Path, int]] = []

    def check_inputs(precision: str) -> None:
        check_writable(args.output_dir or Path("runs"))
        jobs.extend(find_models(args.weights_dir))

    with session(args, check_inputs) as s:
        rc = run_all(args, jobs, s)
        summary = (args.output_dir or Path("runs")) / "summary.json"
        return distributed.exit_status(rc, s.dist, f"not every setting REPRODUCED; exit {rc} is this verdict, not "
                                       f"a crash (the table is printed above; summary: {summary})")


def find_models(weights_dir: Path) -> list[tuple[str, Path, int]]:
    """(registry name, converted folder, img_size) for every converted model under ``weights_dir``."""
    if not weights_dir.is_dir():
        raise SenetZooError(weights_dir, "no such directory (--weights-dir takes convert --all's --output-root)")
    jobs = []
    for name in registry.names():
        folder = weights_dir / name
        if (folder / WEIGHTS_FILE).is_file():
            jobs += [(name, folder, e.img_size) for e in registry.get(name).eval]
    if not jobs:
        raise SenetZooError(weights_dir, f"holds no converted model (expected e.g. {weights_dir}/se_resnet50/"
                            f"{WEIGHTS_FILE}, as convert --all writes)")
    return jobs


def _finished(output: Path, weights: Path, evalset, args: argparse.Namespace, precision: str,
              want_real: bool) -> dict | None:
    """The record at ``output`` when it is this setting's, done with these inputs and options that change
    what it reports (bad images skipped, ReaL results); else None. Batch size and workers change no
    prediction (tests/test_validation_exact.py), so a record made with others still counts."""
    try:
        record = jsonio.load_path(output)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    npz = sibling(output, ".npz")
    try:
        same = (record.get("weights", {}).get("sha256") == sha256_file(resolve_weights(weights)[0])
                and record.get("data", {}).get("file_list_sha256") == evalset.file_list_sha256()
                and record.get("data", {}).get("labels_sha256") == evalset.labels_sha256()
                and record.get("preprocess", {}).get("name") == args.preprocess
                and record.get("precision") == precision
                and record.get("run", {}).get("skip_bad_images") == args.skip_bad_images
                and ("real" in record.get("results", {})) == want_real and npz.is_file())
    except (AttributeError, OSError):
        return None
    return record if same else None


def run_all(args: argparse.Namespace, jobs: list[tuple[str, Path, int]], s: Session) -> int:
    precision, evalset, dist, log = s.precision, s.evalset, s.dist, s.log
    out_dir = args.output_dir or Path("runs")
    rows = []
    for i, (name, folder, size) in enumerate(jobs, 1):
        output = out_dir / default_output(name, size, args.preprocess, precision, args.limit).name
        one = copy.copy(args)
        one.model, one.weights, one.img_size, one.output, one.all = name, folder, size, output, False
        one.weights_dir = one.output_dir = None  # the record's command is this one run, as typed on its own
        one._entry = f"{getattr(args, '_entry', 'senet-zoo validate')}"
        log(f"\n[{i}/{len(jobs)}] {name} at {size}")
        record = _finished(output, folder, evalset, args, precision, s.real is not None) if dist.is_main else None
        done = distributed.broadcast_object(record is not None, dist)
        if done:
            log(f"{output}: already validated with these weights and images ({record['verdict'] if record else ''})")
        else:
            one.resume = args.resume or sibling(output, ".progress.npz").is_file()
            _, record = validate_one(one, s)
            if s.device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append((name, size, output, record))
    if not dist.is_main:
        return 0
    table = format_summary(rows)
    log("")
    log(table)
    summary = [{"model": n, "img_size": s, "record": str(o), "verdict": r["verdict"] if r else None,
                "top1_err": r["results"]["top1_err"] if r else None, "top5_err": r["results"]["top5_err"] if r else None,
                "published": r.get("published") if r else None,
                "matches_published_protocol": not _off_protocol(r) if r else None,
                "wall_time_s": r.get("wall_time_s") if r else None} for n, s, o, r in rows]
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    log(f"summary: {out_dir / 'summary.json'}")
    return 0 if all(r and r["verdict"] == REPRODUCED for *_, r in rows) else 1


def format_summary(rows) -> str:
    head = (f"{'model':<22} {'size':>4}  {'top-1 ours':>10} {'95% CI':>16} {'published':>9}  "
            f"{'top-5 ours':>10} {'95% CI':>16} {'published':>9}  verdict")
    lines = [head, "-" * len(head)]
    for name, size, _output, r in rows:
        res, pub = r["results"], r.get("published") or {}

        def cell(k):
            lo, hi = res[f"{k}_err_ci95"]
            p = pub.get(f"{k}_err")
            return (f"{res[f'{k}_err']:10.2f} {f'[{lo:.2f}, {hi:.2f}]':>16} "
                    f"{(format(p, '.2f') if p is not None else '-'):>9}")

        lines.append(f"{name:<22} {size:>4}  {cell('top1')}  {cell('top5')}  {r['verdict']}"
                     f"{' *' if _off_protocol(r) else ''}")
    n_ok = sum(1 for *_, r in rows if r["verdict"] == REPRODUCED)
    lines.append(f"{n_ok} of {len(rows)} REPRODUCED")
    if any(_off_protocol(r) for *_, r in rows):
        lines.append("* not the published protocol (subset, pil, amp or skipped images): see the record's "
                     "protocol.notes")
    return "\n".join(lines)


def _off_protocol(record: dict) -> bool:
    """A verdict compares numbers only: a run that is not the published protocol (a subset, pil, amp,
    skipped images) is marked as such wherever its verdict is shown."""
    return (record.get("protocol") or {}).get("matches_published") is False
