"""Top-k errors, their 95% Wilson intervals, and ReaL accuracy ("Are we done with ImageNet?")."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import val_names
from ..errors import SenetZooError

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of an error rate ``errors / n``, in percent."""
    if n <= 0:
        return (0.0, 100.0)
    p = errors / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half))


def topk_errors(top5: np.ndarray, labels: np.ndarray) -> tuple[int, int, int]:
    """(top-1 mistakes, top-5 mistakes, n) of (N, 5) predictions against (N,) labels."""
    top5 = np.asarray(top5, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if top5.ndim != 2 or top5.shape[1] < 5 or top5.shape[0] != labels.shape[0]:
        raise ValueError(f"top5 has shape {top5.shape} for {labels.shape[0]} labels")
    wrong1 = int(np.count_nonzero(top5[:, 0] != labels))
    wrong5 = int(np.count_nonzero(~(top5[:, :5] == labels[:, None]).any(axis=1)))
    return wrong1, wrong5, int(labels.shape[0])


def error_summary(top5: np.ndarray, labels: np.ndarray) -> dict:
    wrong1, wrong5, n = topk_errors(top5, labels)
    return {
        "top1_err": 100.0 * wrong1 / n if n else float("nan"),
        "top5_err": 100.0 * wrong5 / n if n else float("nan"),
        "top1_err_ci95": list(wilson_interval(wrong1, n)),
        "top5_err_ci95": list(wilson_interval(wrong5, n)),
        "top1_wrong": wrong1,
        "top5_wrong": wrong5,
    }


# ----------------------------------------------------------------------------------------------- ReaL

def load_real_labels(path: str | Path | None) -> tuple[list[list[int]], str]:
    """ReaL labels: a list of 50,000 lists of sorted-wnid indices, entry i for ``ILSVRC2012_val_{i+1:08d}``.
    ``path`` None: the copy timm ships (``timm/data/_info/imagenet_real_labels.json``, google-research/
    reassessed-imagenet ``real.json``)."""
    if path is None:
        from importlib import resources

        try:
            ref = resources.files("timm.data").joinpath("_info/imagenet_real_labels.json")
            text = ref.read_text(encoding="utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            raise SenetZooError(None, "--real-labels without FILE uses the copy of real.json that timm ships, and "
                                "timm is not installed: pass --real-labels real.json") from None
        source = "timm/data/_info/imagenet_real_labels.json (google-research/reassessed-imagenet real.json)"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise SenetZooError(path, f"cannot read ReaL labels ({e.strerror or e})") from None
        source = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SenetZooError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, list) or not all(isinstance(x, list) for x in data):
        raise SenetZooError(path, "expected real.json: a list of label lists, one per validation image")
    return data, source


def real_accuracy(names: list[str], top5: np.ndarray, real: list[list[int]], source: str) -> dict:
    """ReaL top-1/top-5 accuracy as timm's ``RealLabelsImagenet``: over images with at least one ReaL
    label, the fraction whose top-1 (any of the top-5) prediction is one of them."""
    hit1, hit5, n, unlabelled = 0, 0, 0, 0
    for name, pred in zip(names, np.asarray(top5)):
        number = val_names.number(name)
        if number is None or not 1 <= number <= len(real):
            raise SenetZooError(name, "--real-labels needs ILSVRC2012 validation images (ILSVRC2012_val_XXXXXXXX.JPEG)")
        labels = real[number - 1]
        if not labels:
            unlabelled += 1
            continue
        n += 1
        hit1 += int(pred[0]) in labels
        hit5 += any(int(p) in labels for p in pred[:5])
    top1 = 100.0 * hit1 / n if n else float("nan")
    top5_acc = 100.0 * hit5 / n if n else float("nan")
    return {"top1_acc": top1, "top5_acc": top5_acc, "top1_err": 100.0 - top1, "top5_err": 100.0 - top5_acc,
            "num_images": n, "num_without_real_labels": unlabelled, "source": source}
