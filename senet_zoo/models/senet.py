"""The six residual SE networks of the release: SE-ResNet-50/101/152, SE-ResNeXt-50/101 (32x4d), SENet-154.

Module and parameter names match timm's ``legacy_seresnet*`` / ``legacy_seresnext*`` / ``legacy_senet154``,
so converted weights load into those models with ``strict=True``. Where the three block variants put the
stride and how wide they are follows the release's prototxts (checked against them in tests):

* SE-ResNet: stride on the first 1x1 (``conv{S}_1_1x1_reduce`` has ``stride: 2``), widths p, p, 4p.
* SE-ResNeXt 32x4d: stride on the grouped 3x3, widths 2p, 2p (32 groups), 4p.
* SENet-154: stride on the grouped 3x3, widths 2p, 4p (64 groups), 4p; 3-conv stem; 3x3 stride-2
  projection shortcuts after the first stage; dropout 0.2 before the classifier (identity at test).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .layers import GlobalAvgPoolFlatten, SEModule, caffe_max_pool

REDUCTION = 16


@dataclass(frozen=True)
class SENetSpec:
    blocks: tuple[int, int, int, int]
    block: str                # "resnet", "resnext", "senet"
    groups: int
    stem_3x3: bool = False    # SENet-154: three 3x3 convs instead of one 7x7
    stem_width: int = 64      # channels entering layer1
    proj_kernel: int = 1      # shortcut projection kernel in layers 2-4
    drop_rate: float = 0.0

    def widths(self, planes: int) -> tuple[int, int, int]:
        """(conv1 out, conv2 out, conv3 out) of a block with ``planes`` base width."""
        if self.block == "resnet":
            return planes, planes, planes * 4
        if self.block == "resnext":
            return planes * 2, planes * 2, planes * 4
        return planes * 2, planes * 4, planes * 4

    @property
    def stride_in_1x1(self) -> bool:
        return self.block == "resnet"


SPECS: dict[str, SENetSpec] = {
    "se_resnet50": SENetSpec((3, 4, 6, 3), "resnet", 1),
    "se_resnet101": SENetSpec((3, 4, 23, 3), "resnet", 1),
    "se_resnet152": SENetSpec((3, 8, 36, 3), "resnet", 1),
    "se_resnext50_32x4d": SENetSpec((3, 4, 6, 3), "resnext", 32),
    "se_resnext101_32x4d": SENetSpec((3, 4, 23, 3), "resnext", 32),
    "senet154": SENetSpec((3, 8, 36, 3), "senet", 64, stem_3x3=True, stem_width=128, proj_kernel=3, drop_rate=0.2),
}
STAGE_PLANES = (64, 128, 256, 512)


class SEBottleneck(nn.Module):
    """1x1 -> grouped 3x3 -> 1x1, SE gate on the branch, then ``relu(gate * branch + shortcut)`` (Caffe's Axpy)."""

    def __init__(self, in_ch: int, widths: tuple[int, int, int], groups: int, stride: int,
                 stride_in_1x1: bool, downsample: nn.Module | None):
        super().__init__()
        w1, w2, out = widths
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, w1, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=s3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = SEModule(out, out // REDUCTION)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.se_module(out) + shortcut)


class SENet(nn.Module):
    def __init__(self, spec: SENetSpec, num_classes: int = 1000):
        super().__init__()
        self.spec = spec
        if spec.stem_3x3:
            stem = [("conv1", nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(64)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False)), ("bn2", nn.BatchNorm2d(64)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("conv3", nn.Conv2d(64, spec.stem_width, 3, padding=1, bias=False)),
                    ("bn3", nn.BatchNorm2d(spec.stem_width)), ("relu3", nn.ReLU(inplace=True))]
        else:
            stem = [("conv1", nn.Conv2d(3, spec.stem_width, 7, stride=2, padding=3, bias=False)),
                    ("bn1", nn.BatchNorm2d(spec.stem_width)), ("relu1", nn.ReLU(inplace=True))]
        self.layer0 = nn.Sequential(OrderedDict(stem))
        self.pool0 = caffe_max_pool(3, 2)
        in_ch = spec.stem_width
        for i, (planes, n) in enumerate(zip(STAGE_PLANES, spec.blocks)):
            stage, in_ch = self._stage(in_ch, planes, n, stride=1 if i == 0 else 2, first_stage=i == 0)
            self.add_module(f"layer{i + 1}", stage)
        self.num_features = in_ch
        self.global_pool = GlobalAvgPoolFlatten()
        self.drop_rate = spec.drop_rate
        self.dropout = nn.Dropout(spec.drop_rate)
        self.last_linear = nn.Linear(in_ch, num_classes)

    def _stage(self, in_ch: int, planes: int, n: int, stride: int, first_stage: bool) -> tuple[nn.Sequential, int]:
        widths = self.spec.widths(planes)
        out = widths[2]
        k = 1 if first_stage else self.spec.proj_kernel
        downsample = nn.Sequential(nn.Conv2d(in_ch, out, k, stride=stride, padding=k // 2, bias=False),
                                   nn.BatchNorm2d(out))
        blocks = [SEBottleneck(in_ch, widths, self.spec.groups, stride, self.spec.stride_in_1x1, downsample)]
        blocks += [SEBottleneck(out, widths, self.spec.groups, 1, self.spec.stride_in_1x1, None) for _ in range(n - 1)]
        return nn.Sequential(*blocks), out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool0(self.layer0(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(self.global_pool(x))
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
