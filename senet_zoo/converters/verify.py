"""Equality evidence: the converted PyTorch model against an independent Caffe runtime on the same inputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import classes
from ..errors import SenetZooError

from .opencv_reference import caffe_input

# max |Δlogit| allowed, relative to the spread (std) of the reference logits.
TOLERANCE = 5e-3


@dataclass
class Agreement:
    num_images: int
    max_abs_diff: float
    reference_std: float
    top1_agree: int

    @property
    def ratio(self) -> float:
        return self.max_abs_diff / self.reference_std if self.reference_std > 0 else float("inf")

    @property
    def ok(self) -> bool:
        return self.ratio <= TOLERANCE and self.top1_agree == self.num_images

    def summary(self) -> str:
        return (f"{self.num_images} images: max |Δlogit| {self.max_abs_diff:.3g} = {self.ratio:.2e} × std of the "
                f"reference logits ({self.reference_std:.3g}; tolerance {TOLERANCE:g}), top-1 agrees on "
                f"{self.top1_agree}/{self.num_images}")


def generated_images(n: int, seed: int = 0, size: int = 224) -> np.ndarray:
    """Seeded natural-looking test inputs (N, size, size, 3) BGR uint8 (smooth colour fields with texture),
    the same generator that calibrates synthetic weights (which offsets its seeds, so they never coincide)."""
    from .synthetic import calibration_images

    return calibration_images(n, seed, size)


def torch_input(images_bgr: np.ndarray) -> torch.Tensor:
    """The same input for a converted model: RGB; (x/255 - mean)/std with the converted config equals
    pixel - mean, computed here without the two roundings."""
    return torch.from_numpy(np.ascontiguousarray(caffe_input(images_bgr)[:, ::-1]))


def compare(model: torch.nn.Module, reference, images_bgr: np.ndarray, batch_size: int = 8) -> Agreement:
    """``reference.forward(blob)`` gives devkit-ordered logits; the model gives sorted-wnid logits."""
    ref_chunks, ours_chunks = [], []
    for start in range(0, len(images_bgr), batch_size):
        chunk = images_bgr[start:start + batch_size]
        ref_chunks.append(reference.forward(caffe_input(chunk))[:, classes.sorted_to_devkit()])
        with torch.inference_mode():
            ours_chunks.append(model(torch_input(chunk)).float().numpy())
    ref, ours = np.concatenate(ref_chunks), np.concatenate(ours_chunks)
    return Agreement(
        num_images=len(images_bgr),
        max_abs_diff=float(np.abs(ref.astype(np.float64) - ours).max()),
        reference_std=float(ref.std()),
        top1_agree=int((ref.argmax(1) == ours.argmax(1)).sum()),
    )


def binary_caffemodel_for_opencv(prototxt: Path, caffemodel: Path, folder: Path) -> Path:
    """OpenCV reads only binary caffemodels: an HDF5 snapshot's blobs are re-encoded, unchanged, into the
    binary format (our writer, round-trip tested bit for bit) with the prototxt's layer definitions."""
    from . import caffe_io

    if not caffe_io.is_hdf5(caffemodel):
        return Path(caffemodel)
    blobs = {layer.name: layer.blobs for layer in caffe_io.read_weights(caffemodel).param_layers()}
    net = caffe_io.read_prototxt(prototxt)
    for layer in net.layers:
        layer.blobs = blobs.get(layer.name, [])
    binary = Path(folder) / (Path(caffemodel).name.removesuffix(".h5") + ".binary.caffemodel")
    caffe_io.write_caffemodel(net, binary)
    return binary


def load_images(folder: Path, limit: int, resize: int = 256, crop: int = 224) -> tuple[np.ndarray, list[str]]:
    """Up to ``limit`` images from ``folder`` under the release's preprocessing (sorted by name)."""
    from ..images.preprocess import caffe_preprocess_file

    folder = Path(folder)
    if not folder.is_dir():
        raise SenetZooError(folder, "not a directory of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})[:limit]
    if not files:
        raise SenetZooError(folder, "contains no .jpg/.jpeg/.png/.bmp images")
    return np.stack([caffe_preprocess_file(p, resize, crop) for p in files]), [p.name for p in files]
