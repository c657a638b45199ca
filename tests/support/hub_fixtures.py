"""Converted folders and validation records for the hub tests, made in the test's scratch space.

``converted_folder`` writes what ``senet-zoo convert`` writes (``config.json`` from the converter's own
``models.config.hub_config``, safetensors metadata with the converter's keys) around seeded weights of our
architecture; ``tiny_folder`` writes the same files around a single dummy tensor, for gate tests that never
load weights. ``write_record`` writes a validation record and its predictions file whose numbers agree.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from senet_zoo import registry

TOKEN = "hf_testtoken123abcdefghijklmnopqrstuv"
CONVERTER_VERSION = "0.1.0"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(dest: Path, name: str, tensors: dict, num_features: int, source_sha256: str,
           converter_version: str) -> Path:
    from safetensors.numpy import save_file

    from senet_zoo.models.config import CLASS_ORDER, hub_config

    ckpt = registry.get(name)
    dest.mkdir(parents=True, exist_ok=True)
    config = hub_config(ckpt, num_features, ckpt.caffemodel, source_sha256, converter_version)
    metadata = {"format": "pt", "model": name, "source_file": ckpt.caffemodel, "source_sha256": source_sha256,
                "converter_version": converter_version, "class_order": CLASS_ORDER}
    save_file(tensors, str(dest / "model.safetensors"), metadata=metadata)
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest


def release_sha(name: str) -> str:
    return registry.get(name).caffemodel_sha256 or "0" * 64


def converted_folder(dest: Path, name: str = "se_resnet50", seed: int = 0, source_sha256: str | None = None,
                     converter_version: str = CONVERTER_VERSION) -> Path:
    import torch

    from senet_zoo.models import build

    torch.manual_seed(seed)
    model = build(registry.get(name).architecture).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that outputs exercise every tensor
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    tensors = {k: v.contiguous().numpy() for k, v in model.state_dict().items()}
    return _write(dest, name, tensors, tensors["last_linear.weight"].shape[1],
                  source_sha256 or release_sha(name), converter_version)


def tiny_folder(dest: Path, name: str = "se_resnet50", seed: int = 0, source_sha256: str | None = None,
                converter_version: str = CONVERTER_VERSION) -> Path:
    tensors = {"dummy": np.full((4,), seed, dtype=np.float32)}
    return _write(dest, name, tensors, 2048, source_sha256 or release_sha(name), converter_version)


def predictions(n: int, top1_err: float, top5_err: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """labels and top-5 rows with exactly round(n*err/100) top-1 and top-5 misses."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 1000, n).astype(np.int64)
    miss1, miss5 = round(n * top1_err / 100), round(n * top5_err / 100)
    top5 = (labels[:, None] + np.arange(1, 6)[None, :]) % 1000  # never the label
    order = rng.permutation(n)
    hit_first = order[miss1:]                     # top-1 right
    hit_later = order[miss5:miss1]                # right within top-5 only
    top5[hit_first, 0] = labels[hit_first]
    top5[hit_later, 3] = labels[hit_later]
    return labels, top5.astype(np.int64)


def write_record(runs: Path, weights_dir: Path, *, name: str | None = None, img_size: int = 224,
                 top1_err: float | None = None, top5_err: float | None = None, n: int = 50_000,
                 published: dict | None = None, verdict: str | None = None, tolerance: float = 0.10,
                 stem: str | None = None, preprocess: str = "caffe", precision: str = "fp32",
                 created: str | None = None, seed: int = 0, weights_sha256: str | None = None,
                 **overrides) -> Path:
    """A record + predictions file in ``runs``; defaults reproduce the registry's published numbers."""
    cfg = json.loads((weights_dir / "config.json").read_text())
    name = name or cfg["senet_zoo"]["model"]
    ckpt = registry.get(name)
    pub = ckpt.published_for(img_size)
    if published is None:
        published = {"top1_err": pub.top1_err, "top5_err": pub.top5_err, "source": pub.source}
    top1_err = published["top1_err"] if top1_err is None else top1_err
    top5_err = published["top5_err"] if top5_err is None else top5_err
    labels, top5 = predictions(n, top1_err, top5_err, seed)
    r1 = 100.0 * float(np.mean(top5[:, 0] != labels))
    r5 = 100.0 * float(np.mean(~(top5 == labels[:, None]).any(1)))
    stem = stem or f"{name}-{img_size}"
    runs.mkdir(parents=True, exist_ok=True)
    npz = runs / f"{stem}.npz"
    np.savez(npz, names=np.array([f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(n)]), labels=labels, top5=top5)
    d1, d5 = r1 - published["top1_err"], r5 - published["top5_err"]
    if verdict is None:
        verdict = "REPRODUCED" if abs(d1) <= tolerance + 1e-9 and abs(d5) <= tolerance + 1e-9 else "NOT REPRODUCED"

    def ci(p):
        half = 196 * math.sqrt(max(p / 100 * (1 - p / 100), 1e-12) / n)
        return [round(max(p - half, 0), 3), round(p + half, 3)]

    record = {
        "schema": "senet-zoo/validation-record/1", "model": name, "display_name": ckpt.display_name,
        "weights": {"path": str(weights_dir / "model.safetensors"),
                    "sha256": weights_sha256 or _sha256(weights_dir / "model.safetensors")},
        "data": {"path": "/data/imagenet/val", "layout": "flat", "num_images": n,
                 "label_source": "ILSVRC2012_validation_ground_truth.txt", "file_list_sha256": "ab" * 32},
        "preprocess": {"name": preprocess, "resize": ckpt.eval_setting(img_size).resize, "crop": img_size,
                       "interpolation": "bilinear", "decoder": "opencv", "mean": [104, 117, 123], "std": [1, 1, 1]},
        "img_size": img_size, "precision": precision,
        "environment": {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "torch": "2.14.1", "cuda": "12.8",
                        "cudnn": "91000", "senet_zoo": "0.1.0", "world_size": 1, "hostname": "node-1"},
        "results": {"num_images": n, "num_bad_images": 0, "bad_images": [], "top1_err": round(r1, 4),
                    "top5_err": round(r5, 4), "top1_err_ci95": ci(r1), "top5_err_ci95": ci(r5)},
        "published": published,
        "delta": {"top1_err": round(d1, 4), "top5_err": round(d5, 4)}, "tolerance_pp": tolerance,
        "verdict": verdict,
        "predictions": {"file": npz.name, "sha256": _sha256(npz)},
        "wall_time_s": 100.0, "images_per_s": n / 100.0,
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"senet-zoo validate --model {name} --weights {weights_dir} --output {runs}/{stem}.json",
    }
    for key, value in overrides.items():  # e.g. results={...}: shallow-merged into that section
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **value}
        else:
            record[key] = value
    path = runs / f"{stem}.json"
    path.write_text(json.dumps(record, indent=2))
    return path


def reference_published(top1_err: float, top5_err: float) -> dict:
    return {"top1_err": top1_err, "top5_err": top5_err,
            "source": "reference runtime: OpenCV dnn (Caffe importer) top-1 labels of the same images"}


_SHARED: dict = {}


def shared_converted(tmp_path_factory, name: str = "se_resnet50") -> Path:
    """One seeded converted folder per test session (read-only for tests: copy before changing it)."""
    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _SHARED:
        _SHARED[key] = converted_folder(tmp_path_factory.mktemp("converted") / name, name)
    return _SHARED[key]


def run_cli(argv: list[str], capfd) -> tuple[int, str, str]:
    """``senet-zoo ARGV`` in-process: (exit code, stdout, stderr)."""
    from senet_zoo.cli import main

    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err
