"""Building blocks shared by the seven architectures.

Pooling follows Caffe: output sizes round up (``ceil_mode=True``; PyTorch applies the same clip as Caffe
when the last window would start in the padding), and AVE pooling counts padding in the divisor but not
the ceil overhang (``count_include_pad=True``: PyTorch's divisor is ``min(start+k, in+pad) - start``,
exactly Caffe's ``pool_size``).
"""
from __future__ import annotations

import torch
from torch import nn


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: global average, 1x1 conv down, ReLU, 1x1 conv up, sigmoid.

    Caffe's release implements the FC layers as 1x1 convolutions with bias, hence ``fc1``/``fc2`` are
    ``Conv2d`` (also timm's names, so converted weights load into timm's legacy SENets).
    """

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def caffe_max_pool(kernel: int, stride: int, pad: int = 0) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel, stride=stride, padding=pad, ceil_mode=True)


def caffe_avg_pool(kernel: int, stride: int, pad: int = 0) -> nn.AvgPool2d:
    return nn.AvgPool2d(kernel, stride=stride, padding=pad, ceil_mode=True, count_include_pad=True)


class GlobalAvgPoolFlatten(nn.Module):
    """The classifier's pool: Caffe's AVE 7x7 stride 1 on the 7x7 map at 224 is a global average;
    taking the global average keeps the model valid at 320x320 (SENet-154's second reported size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))
