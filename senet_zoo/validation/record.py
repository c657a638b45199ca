"""The validation record (JSON) and its per-image predictions file (``.npz``), both written atomically.

The record is the evidence the Hub push gate consumes (``senet_zoo.hub.records``); its keys are documented
in ``docs/validation.md``. The predictions file beside it holds ``names`` (relative file names), ``labels``
(int64 sorted-wnid), ``top5`` ((N, 5) int64 sorted-wnid indices, best first) and, with ``--save-logits``,
``logits`` ((N, 1000) float32); ``recompute_metrics`` gives back the record's errors from it alone.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

import numpy as np

from ..files import atomic_path, atomic_write_text, sha256_file

SCHEMA = "senet-zoo/validation-record/1"
REPRODUCED, NOT_REPRODUCED, NO_PUBLISHED = "REPRODUCED", "NOT REPRODUCED", "NO PUBLISHED NUMBERS"
# ``published.source`` of a run whose labels are another runtime's top-1 predictions (the demo's stand-in);
# the Hub gate recognises such records by this phrase.
REFERENCE_RUNTIME_PREFIX = "reference runtime: "
FULL_VAL_IMAGES = 50_000
# Differences are compared at this many decimals of a percentage point: 100*k/n and the published decimals are
# not exact in binary (22.47 - 22.37 is 0.0999...98), and a difference of exactly the tolerance is within it.
_TOLERANCE_DECIMALS = 9


def command_line(args: argparse.Namespace, world_size: int = 1) -> str:
    """The canonical command of this run (non-default options only)."""
    entry = getattr(args, "_entry", "senet-zoo validate")
    if world_size > 1:
        entry = f"torchrun --nproc_per_node={world_size} -m senet_zoo.validation"
    parts = shlex.split(entry)
    for action in getattr(args, "_actions", []):
        value = getattr(args, action.dest, None)
        if value is None or (value == action.default and not action.required):
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):  # --no-fold-bn, --no-channels-last
            parts.append(flag if value else "--no-" + flag[2:])
        elif value is True:
            parts.append(flag)
        elif action.nargs == "?" and value == action.const:
            parts.append(flag)
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def default_output(model: str, img_size: int, preprocess: str, precision: str, limit: int | None) -> Path:
    suffix = ("-pil" if preprocess == "pil" else "") + (f"-{precision}" if precision != "fp32" else "") + \
             (f"-limit{limit}" if limit else "")
    return Path("runs") / f"{model}-{img_size}{suffix}.json"


def sibling(output: Path, suffix: str) -> Path:
    stem = output.name[:-5] if output.name.endswith(".json") else output.name
    return output.with_name(stem + suffix)


def within_tolerance(difference_pp: float, tolerance_pp: float) -> bool:
    """|difference| <= tolerance, both in percentage points, the bound included."""
    return round(abs(difference_pp), _TOLERANCE_DECIMALS) <= tolerance_pp


def verdict(top1_err: float, top5_err: float, published: dict | None, tolerance_pp: float) -> str:
    if not published:
        return NO_PUBLISHED
    ok = (within_tolerance(top1_err - published["top1_err"], tolerance_pp)
          and within_tolerance(top5_err - published["top5_err"], tolerance_pp))
    return REPRODUCED if ok else NOT_REPRODUCED


def verdict_line(record: dict, output: Path) -> str:
    """The verdict in one line, for the places where the table is out of sight (torchrun's failure report)."""
    res, pub = record["results"], record.get("published") or {}
    numbers = ", ".join(f"{label} err {res[f'{k}_err']:.2f}"
                        + (f" (published {pub[f'{k}_err']:.2f})" if pub.get(f"{k}_err") is not None else "")
                        for k, label in (("top1", "top-1"), ("top5", "top-5")))
    return (f"{record['display_name']}: {record['verdict']}: {numbers}, tolerance {record['tolerance_pp']:.2f} "
            f"pp; exit {exit_code(record['verdict'])} is this verdict, not a crash (the table is printed above; "
            f"record: {output})")


def exit_code(v: str) -> int:
    """0 reproduced (or nothing to compare with), 1 not reproduced."""
    return 1 if v == NOT_REPRODUCED else 0


def write_predictions(path: str | Path, names: list[str], labels: np.ndarray, top5: np.ndarray,
                      logits: np.ndarray | None = None) -> str:
    """Write the predictions file atomically; returns its sha256."""
    arrays = {
        "names": np.array(names, dtype=np.str_),
        "labels": np.asarray(labels, dtype=np.int64),
        "top5": np.asarray(top5, dtype=np.int64).reshape(-1, 5),
    }
    if logits is not None:
        arrays["logits"] = np.asarray(logits, dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return sha256_file(path)


def load_predictions(npz_path: str | Path) -> dict[str, np.ndarray]:
    with np.load(npz_path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def recompute_metrics(npz_path: str | Path) -> tuple[float, float, int]:
    """(top-1 error %, top-5 error %, N) from a predictions file alone."""
    from .metrics import topk_errors

    with np.load(npz_path, allow_pickle=False) as z:
        labels = np.asarray(z["labels"], dtype=np.int64)
        top5 = np.asarray(z["top5"], dtype=np.int64)
    if labels.ndim != 1 or top5.ndim != 2 or top5.shape != (labels.shape[0], 5):
        raise ValueError(f"top5 has shape {top5.shape} for {labels.shape} labels")
    if labels.shape[0] == 0:
        raise ValueError("no predictions")
    wrong1, wrong5, n = topk_errors(top5, labels)
    return 100.0 * wrong1 / n, 100.0 * wrong5 / n, n


def write_record(path: str | Path, record: dict) -> None:
    atomic_write_text(path, json.dumps(_clean(record), indent=2) + "\n")


def _clean(value):
    """JSON-safe: numpy scalars to Python, NaN to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(record: dict) -> str:
    """The summary printed at the end of a run."""
    res, pub, delta = record["results"], record.get("published"), record.get("delta")
    env = record["environment"]
    tol = record["tolerance_pp"]
    head = (f"{record['display_name']} ({record['model']}) at {record['img_size']}: "
            f"{record['preprocess']['name']} preprocessing (resize {record['preprocess']['resize']}, crop "
            f"{record['preprocess']['crop']}), {record['precision']}, {res['num_images']:,} images"
            f"{', ' + str(res['num_bad_images']) + ' bad skipped' if res['num_bad_images'] else ''}"
            f" on {env['device']}{' x' + str(env['world_size']) if env['world_size'] > 1 else ''}")
    lines = [head, ""]
    lines.append(f"{'':10}  {'ours':>7}  {'95% CI':>17}  {'published':>9}  {'diff':>7}  {'tolerance':>9}")
    for k, label in (("top1", "top-1 err"), ("top5", "top-5 err")):
        ours = res[f"{k}_err"]
        lo, hi = res[f"{k}_err_ci95"]
        ci = f"[{lo:6.2f}, {hi:6.2f}]"
        if pub:
            d = delta[f"{k}_err"]
            ok = "ok" if within_tolerance(d, tol) else "OUT"
            lines.append(f"{label:10}  {ours:7.2f}  {ci:>17}  {pub[f'{k}_err']:9.2f}  {d:+7.2f}  "
                         f"{'±' + format(tol, '.2f'):>9}  {ok}")
        else:
            lines.append(f"{label:10}  {ours:7.2f}  {ci:>17}  {'-':>9}  {'-':>7}  {'-':>9}")
    real = res.get("real")
    if real:
        lines.append(f"{'ReaL err':10}  {real['top1_err']:7.2f}  (top-5 {real['top5_err']:.2f}; "
                     f"{real['num_images']:,} images with ReaL labels)")
    lines.append("")
    if pub:
        lines.append(f"published: {pub['source']}")
    for note in record.get("protocol", {}).get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"verdict: {record['verdict']}")
    return "\n".join(lines)
