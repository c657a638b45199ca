"""Shared test helpers: where the upstream release files are, and synthetic release-format models."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RELEASE_DIR = REPO.parent / "shared" / "senet-release"

# registry name -> official prototxt file name (also in checkpoints.yaml; repeated here so a registry
# mistake cannot hide itself)
PROTOTXTS = {
    "se_bn_inception": "SE-BN-Inception.prototxt",
    "se_resnet50": "SE-ResNet-50.prototxt",
    "se_resnet101": "SE-ResNet-101.prototxt",
    "se_resnet152": "SE-ResNet-152.prototxt",
    "se_resnext50_32x4d": "SE-ResNeXt-50.prototxt",
    "se_resnext101_32x4d": "SE-ResNeXt-101.prototxt",
    "senet154": "SENet-154.prototxt",
}


def release_file(name: str) -> Path:
    """A file of the official release in ../shared/senet-release, or skip the test saying why."""
    path = RELEASE_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the upstream release files (prototxts, ILSVRC2017_val.txt) live in "
                    "../shared/senet-release beside the repository")
    return path
