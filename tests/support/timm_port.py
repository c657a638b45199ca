"""A timm ``legacy_se*``-style checkpoint derived from one of our conversions, the way Cadene's
``pretrainedmodels`` port turned the release's caffemodels into timm's weights (docs/timm.md says where each
step comes from):

1. the network is the caffemodel's, tensor for tensor, under timm's ``legacy_se*`` names (Caffe's BatchNorm
   + Scale as one ``nn.BatchNorm2d``; the classifier rows in sorted-wnid order, which Cadene's ImageNet
   evaluation (torchvision ``ImageFolder``) requires);
2. its input is declared RGB in [0, 1] normalised with ImageNet's mean/std (``pretrained_settings`` of
   ``pretrainedmodels/models/senet.py``, copied by timm), instead of Caffe's BGR 0-255 minus
   (104, 117, 123): so the first convolution's input channels are reversed (BGR -> RGB, as ours) and
   channel c is multiplied by 255·std_c (the Caffe->PyTorch recipe of the time, ruotianluo/pytorch-resnet
   ``convert2.py``: ``k *= 255 * std``);
3. the mean difference 255·mean_c - (123, 117, 104)_c is either folded into the first BatchNorm's running
   mean through conv1 (``fold_mean=True``) or left out (``fold_mean=False``, as that recipe does): the port's
   script was never published, so both are built and ``compare`` must tell which one it sees;
4. 2018 checkpoints (torch 0.4.0) have no ``num_batches_tracked``.
"""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)   # the release's BGR (104, 117, 123), in RGB order


def cadene_port(ours: dict[str, np.ndarray], fold_mean: bool = True, bgr: bool = False,
                mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict[str, np.ndarray]:
    """timm's checkpoint from our converted state dict (our conv1 already takes RGB); ``bgr``: a port whose
    conv1 kept Caffe's channel order."""
    out = {k: v.copy() for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    w = ours["layer0.conv1.weight"].astype(np.float64)                       # (out, RGB, kh, kw)
    scaled = w * (255.0 * np.asarray(std))[None, :, None, None]
    out["layer0.conv1.weight"] = (scaled[:, ::-1] if bgr else scaled).astype(np.float32)
    if fold_mean:
        # ours sees 255·x - m = 255·std·x_timm + (255·mean - m): conv1 of that constant moves into bn1
        shift = 255.0 * np.asarray(mean) - np.asarray(CAFFE_MEAN_RGB)
        d = (w.sum(axis=(2, 3)) * shift[None, :]).sum(axis=1)
        out["layer0.bn1.running_mean"] = (ours["layer0.bn1.running_mean"].astype(np.float64) - d).astype(np.float32)
    return out
