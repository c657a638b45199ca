"""Eval BatchNorm folded into the convolution before it: one pass over each activation instead of two.

A BatchNorm in eval mode is a per-channel affine map y = a * x + b with a = gamma / sqrt(var + eps) and
b = beta - a * mean, so ``bn(conv(x))`` equals a convolution with weights ``a * W`` and bias ``a * c + b``
(c the conv's own bias, zero here). The new weights are computed in float64 and rounded once to float32,
so the folded model differs from the unfolded one only by float32 rounding of the products (about 1e-7
relative); ``tests/test_fold.py`` holds it to max |dlogit| / std <= 1e-4 and identical top-5 on the demo's
and the tests' images, the condition under which ``validate`` uses it.

Which BatchNorm follows which convolution is read from the architectures' structure, not guessed from
module order alone: in an ``nn.Sequential`` a Conv2d directly followed by a BatchNorm2d; in any other module
the attribute pairs ``conv``/``bn`` and ``convK``/``bnK`` (SEBottleneck, ConvBN). Every BatchNorm2d of the
seven architectures is covered; ``fold_batchnorm`` refuses a model where one is left over.
"""
from __future__ import annotations

import copy
import re

import torch
from torch import nn

_CONV_NAME = re.compile(r"conv(\d*)$")


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing ``bn(conv(x))`` for eval-mode ``bn`` (float32 weights, float64 arithmetic)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    dtype = conv.weight.dtype
    w = conv.weight.detach().to(torch.float64)
    var = bn.running_var.detach().to(torch.float64)
    mean = bn.running_mean.detach().to(torch.float64)
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.detach().to(torch.float64) if conv.bias is not None else torch.zeros_like(var)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                       padding_mode=conv.padding_mode, device=conv.weight.device, dtype=dtype)
    with torch.no_grad():
        folded.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(dtype))
        folded.bias.copy_((beta + scale * (bias - mean)).to(dtype))
    return folded.eval()


def _fold_children(module: nn.Module) -> int:
    count = 0
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fold_conv_bn(conv, bn)
                module._modules[b] = nn.Identity()
                count += 1
    else:
        for name, conv in list(module._modules.items()):
            match = _CONV_NAME.fullmatch(name)
            bn = module._modules.get(f"bn{match.group(1)}") if match else None
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[name] = fold_conv_bn(conv, bn)
                module._modules[f"bn{match.group(1)}"] = nn.Identity()
                count += 1
    for child in module.children():
        count += _fold_children(child)
    return count


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> tuple[nn.Module, int]:
    """(the model with every eval BatchNorm2d folded into its convolution, how many were folded).

    A copy unless ``inplace``; attributes such as ``pretrained_cfg`` travel with it. Raises ``ValueError``
    when a BatchNorm2d is not directly after a convolution the rules above recognise."""
    if model.training:
        raise ValueError("only an eval-mode model can be folded (training BatchNorm uses batch statistics)")
    folded = model if inplace else copy.deepcopy(model)
    count = _fold_children(folded)
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ValueError(f"{len(left)} BatchNorm2d not after a convolution, e.g. {left[0]}")
    folded.bn_folded = count
    return folded.eval(), count
