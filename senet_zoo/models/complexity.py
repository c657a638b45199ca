"""Parameters and multiply-adds, counted the way the paper reports them.

The paper's "GFLOPs" are multiply-adds of convolutions and fully connected layers at 224x224;
``torch.utils.flop_counter`` counts one multiply-add as 2 FLOPs, hence the division by 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import registry
from . import build


@dataclass(frozen=True)
class Complexity:
    parameters: int
    gmacs: float
    baseline_parameters: int   # the same network without its SE modules (e.g. ResNet-50 for SE-ResNet-50)
    baseline_gmacs: float


def _count(model: nn.Module, img_size: int) -> tuple[int, float]:
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, img_size, img_size))
    return params, counter.get_total_flops() / 2 / 1e9


class _NoSE(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def complexity(name: str, img_size: int = 224) -> Complexity:
    model = build(registry.get(name).architecture)
    params, gmacs = _count(model, img_size)
    for module in list(model.modules()):
        if hasattr(module, "se_module"):
            module.se_module = _NoSE()
    base_params, base_gmacs = _count(model, img_size)
    return Complexity(params, gmacs, base_params, base_gmacs)
