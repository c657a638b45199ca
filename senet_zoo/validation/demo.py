"""The validation stage of ``senet-zoo demo``: the converted stand-in against OpenCV's Caffe runtime.

The stand-in (seeded synthetic SE-ResNet-50 weights) has no published numbers, so its "ground truth" is the
reference runtime itself: a seeded set of JPEGs of varied sizes is labelled with the top-1 prediction of
OpenCV's Caffe runtime (``OpenCVCaffeNet``, devkit-ordered outputs mapped to sorted wnids) on the Caffe
preprocessing of the same files, and ``validate`` runs on them with ``--expect-agreement``: the target is 0%
top-1 and top-5 error (``published.source`` starts with "reference runtime: "), so the verdict is
REPRODUCED only if the converted model agrees with the Caffe runtime on every image.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable

import numpy as np

from .. import classes
from ..errors import SenetZooError

MODEL = "se_resnet50"
REFERENCE = "OpenCV Caffe runtime (cv2.dnn)"


def write_demo_images(folder: Path, n: int = 32, seed: int = 0) -> list[Path]:
    """``n`` seeded JPEGs, 160..520 px on each side (portrait, landscape, square; one grayscale)."""
    import cv2

    from ..converters.synthetic import calibration_images

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(160, 521, 2))
        img = calibration_images(1, seed * 1000 + i, (h, w))[0]
        if i == n - 1:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        path = folder / f"demo_{i:04d}.jpg"
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise SenetZooError(path, "cannot write image")
        paths.append(path)
    return paths


def reference_labels(paths: list[Path], prototxt: Path, caffemodel: Path, batch_size: int = 8) -> np.ndarray:
    """Sorted-wnid top-1 of OpenCV's Caffe runtime on the Caffe preprocessing of each file."""
    from ..converters import opencv_reference
    from ..images.preprocess import caffe_preprocess_file

    net = opencv_reference.OpenCVCaffeNet(prototxt, caffemodel)
    d2s = classes.devkit_to_sorted()
    out = []
    for start in range(0, len(paths), batch_size):
        images = np.stack([caffe_preprocess_file(p, 256, 224) for p in paths[start:start + batch_size]])
        logits = np.asarray(net.forward(opencv_reference.caffe_input(images)))
        out.append(d2s[logits.reshape(len(images), -1).argmax(axis=1)])
    return np.concatenate(out).astype(np.int64)


def run_demo_validation(work_dir: Path, weights_dir: Path, prototxt: Path, caffemodel: Path,
                        log: Callable[[str], None] = print, num_images: int = 32, seed: int = 0) -> Path:
    """Write the image set and its reference labels, validate ``weights_dir`` on it; returns the record path.
    Raises ``SenetZooError`` (exit 1) when the converted model disagrees with the Caffe runtime."""
    from .commands import add_arguments
    from .record import REPRODUCED
    from .runner import run_validation
    import argparse
    import json

    work_dir = Path(work_dir)
    images = work_dir / "images"
    paths = write_demo_images(images, num_images, seed)
    labels = reference_labels(paths, Path(prototxt), Path(caffemodel))
    wnids = classes.sorted_wnids()
    label_file = work_dir / "reference_labels.txt"
    label_file.write_text("".join(f"{p.name} {wnids[k]}\n" for p, k in zip(paths, labels)))
    log(f"{len(paths)} JPEGs in {images}, labelled by {REFERENCE} top-1 ({len(set(labels.tolist()))} distinct "
        f"classes) -> {label_file.name}")

    record_path = work_dir / f"{MODEL}-224-reference.json"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([
        "--model", MODEL, "--data", str(images), "--weights", str(weights_dir), "--labels", str(label_file),
        "--label-format", "wnid", "--expect-agreement", REFERENCE, "--device", "cpu", "--batch-size", "16",
        "--workers", "0", "--output", str(record_path), "--no-progress",
    ])
    args._entry = "senet-zoo validate"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run_validation(args)
    for line in buf.getvalue().splitlines():
        log(line)
    record = json.loads(record_path.read_text())
    if record["verdict"] != REPRODUCED:
        raise SenetZooError(record_path, f"the converted model disagrees with {REFERENCE} on "
                            f"{record['results']['top1_wrong']} of {record['results']['num_images']} images",
                            exit_code=1)
    return record_path
