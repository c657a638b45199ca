"""The seven architectures of the release, by registry name, and ``create_model`` (``factory``) with its input
contract (``config``), BatchNorm folding (``fold``) and complexity counts (``complexity``).

May import ``weights`` (where converted weights come from) and the base modules; knows nothing of Caffe.
"""
from __future__ import annotations

from torch import nn

from .se_bn_inception import SEBNInception
from .senet import SPECS, SENet

ARCHITECTURES = ("se_bn_inception", *SPECS)


def build(name: str, num_classes: int = 1000) -> nn.Module:
    """The bare architecture with PyTorch's default initialisation (no weights loaded)."""
    if name == "se_bn_inception":
        return SEBNInception(num_classes)
    if name in SPECS:
        return SENet(SPECS[name], num_classes)
    raise KeyError(name)
