"""SE-BN-Inception: BN-Inception (Ioffe & Szegedy 2015, as in the release) with an SE gate after every
Inception module. It has no timm twin, so its module names follow the release's Caffe layer names
(``inception_3a/double3x3a`` -> ``inception_3a.double3x3a``), which keeps the mapping self-evident.

Caffe details that matter here: every pooling rounds up (the stride-2 max pools of 3c and 4e turn 28
into 14, not 13); the 3x3 average pools pad by 1 and count the padding in the divisor; 5b's pool branch
is a *max* pool; the SE gate is reshaped to (N, C) and applied with a two-input Scale on axis 0, i.e. a
per-(sample, channel) multiplication.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import GlobalAvgPoolFlatten, SEModule, caffe_avg_pool, caffe_max_pool

REDUCTION = 16


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (Caffe's BatchNorm + Scale), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


@dataclass(frozen=True)
class InceptionSpec:
    """Branch widths of one module; 0 means the branch is absent (the stride-2 modules 3c and 4e)."""
    c1x1: int
    c3x3_reduce: int
    c3x3: int
    cdouble_reduce: int
    cdouble: int
    pool: str        # "avg", "max" (3x3 stride 1 pad 1) or "max_s2" (3x3 stride 2, the reduction modules)
    pool_proj: int

    @property
    def stride(self) -> int:
        return 2 if self.pool == "max_s2" else 1


# name -> spec, in network order; input channels follow from the previous module's output.
MODULES: dict[str, InceptionSpec] = {
    "inception_3a": InceptionSpec(64, 64, 64, 64, 96, "avg", 32),
    "inception_3b": InceptionSpec(64, 64, 96, 64, 96, "avg", 64),
    "inception_3c": InceptionSpec(0, 128, 160, 64, 96, "max_s2", 0),
    "inception_4a": InceptionSpec(224, 64, 96, 96, 128, "avg", 128),
    "inception_4b": InceptionSpec(192, 96, 128, 96, 128, "avg", 128),
    "inception_4c": InceptionSpec(160, 128, 160, 128, 160, "avg", 128),
    "inception_4d": InceptionSpec(96, 128, 192, 160, 192, "avg", 128),
    "inception_4e": InceptionSpec(0, 128, 192, 192, 256, "max_s2", 0),
    "inception_5a": InceptionSpec(352, 192, 320, 160, 224, "avg", 128),
    "inception_5b": InceptionSpec(352, 192, 320, 192, 224, "max", 128),
}


class SEInception(nn.Module):
    def __init__(self, in_ch: int, spec: InceptionSpec):
        super().__init__()
        self.spec = spec
        s = spec.stride
        if spec.c1x1:
            self.conv_1x1 = ConvBN(in_ch, spec.c1x1, 1)
        self.conv_3x3_reduce = ConvBN(in_ch, spec.c3x3_reduce, 1)
        self.conv_3x3 = ConvBN(spec.c3x3_reduce, spec.c3x3, 3, stride=s)
        self.conv_double3x3_reduce = ConvBN(in_ch, spec.cdouble_reduce, 1)
        self.conv_double3x3a = ConvBN(spec.cdouble_reduce, spec.cdouble, 3)
        self.conv_double3x3b = ConvBN(spec.cdouble, spec.cdouble, 3, stride=s)
        self.pool = caffe_avg_pool(3, 1, 1) if spec.pool == "avg" else caffe_max_pool(3, s, 1 if s == 1 else 0)
        if spec.pool_proj:
            self.conv_pool_proj = ConvBN(in_ch, spec.pool_proj, 1)
        self.out_channels = (spec.c1x1 + spec.c3x3 + spec.cdouble + (spec.pool_proj or in_ch))
        self.se_module = SEModule(self.out_channels, self.out_channels // REDUCTION)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = []
        if self.spec.c1x1:
            branches.append(self.conv_1x1(x))
        branches.append(self.conv_3x3(self.conv_3x3_reduce(x)))
        branches.append(self.conv_double3x3b(self.conv_double3x3a(self.conv_double3x3_reduce(x))))
        pooled = self.pool(x)
        branches.append(self.conv_pool_proj(pooled) if self.spec.pool_proj else pooled)
        return self.se_module(torch.cat(branches, 1))


class SEBNInception(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = ConvBN(3, 64, 7, stride=2)
        self.pool1 = caffe_max_pool(3, 2)
        self.conv2_reduce = ConvBN(64, 64, 1)
        self.conv2 = ConvBN(64, 192, 3)
        self.pool2 = caffe_max_pool(3, 2)
        in_ch = 192
        for name, spec in MODULES.items():
            module = SEInception(in_ch, spec)
            self.add_module(name, module)
            in_ch = module.out_channels
        self.num_features = in_ch
        self.global_pool = GlobalAvgPoolFlatten()
        self.last_linear = nn.Linear(in_ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(self.conv2_reduce(x)))
        for name in MODULES:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
