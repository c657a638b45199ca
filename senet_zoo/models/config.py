"""The input contract of converted models: timm's ``pretrained_cfg`` and the Hub ``config.json``."""
from __future__ import annotations

from typing import Any

from .. import classes, registry

CLASS_ORDER = "sorted-wnid"
# The mean of the release in RGB order, and a std that undoes torchvision's division by 255: with RGB input
# in [0, 1], (x - mean) / std = 255·x - (123, 117, 104), which is Caffe's input (BGR order restored by
# reversing conv1's input channels). Zero padding stays zero in both.
RGB_MEAN = (123.0 / 255.0, 117.0 / 255.0, 104.0 / 255.0)
STD = (1.0 / 255.0,) * 3


def pretrained_cfg(ckpt: registry.Checkpoint) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a converted release model."""
    residual = ckpt.architecture != "se_bn_inception"
    return {
        "input_size": [3, 224, 224],
        "fixed_input_size": False,
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": list(RGB_MEAN),
        "std": list(STD),
        "num_classes": classes.NUM_CLASSES,
        "pool_size": [7, 7],
        "first_conv": "layer0.conv1" if residual else "conv1.conv",
        "classifier": "last_linear",
        "license": "apache-2.0",
    }


def hub_config(ckpt: registry.Checkpoint, num_features: int, source_file: str, source_sha256: str,
               converter_version: str) -> dict[str, Any]:
    """``config.json`` in timm's Hub layout, so ``timm.create_model('hf-hub:...')`` can load it."""
    return {
        "architecture": ckpt.timm_architecture or ckpt.architecture,
        "num_classes": classes.NUM_CLASSES,
        "num_features": num_features,
        "global_pool": "avg",
        "label_names": list(classes.sorted_wnids()),
        # timm's layout: {label name: description}, written in label_names' order
        "label_descriptions": dict(classes.label_descriptions()),
        "pretrained_cfg": pretrained_cfg(ckpt),
        "senet_zoo": {
            "model": ckpt.name,
            "converter_version": converter_version,
            "source_file": source_file,
            "source_sha256": source_sha256,
            "class_order": CLASS_ORDER,
        },
    }


# What timm's resolve_data_config reads from a pretrained_cfg: the preprocessing. A plain timm model name
# (`legacy_seresnet50`) carries timm's own ImageNet mean/std (0.485/0.229), which silently runs our weights
# on wrongly normalised input; these keys, passed as pretrained_cfg_overlay, replace them.
OVERLAY_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")


def pretrained_cfg_overlay(name: str, file: str | None = None) -> dict[str, Any]:
    """The ``pretrained_cfg_overlay`` to pass to ``timm.create_model(<timm architecture>, pretrained=True,
    pretrained_cfg_overlay=...)`` so that timm preprocesses as our ``config.json`` says; ``file``: the
    converted ``model.safetensors`` for timm to load."""
    from ..errors import SenetZooError

    ckpt = registry.get(name)
    if ckpt.timm_architecture is None:
        raise SenetZooError(None, f"{name}: timm has no {ckpt.display_name} architecture; load it with "
                            "senet_zoo.create_model")
    cfg = pretrained_cfg(ckpt)
    overlay: dict[str, Any] = {k: tuple(cfg[k]) if isinstance(cfg[k], list) else cfg[k] for k in OVERLAY_KEYS}
    if file is not None:
        overlay = {"file": str(file), **overlay}
    return overlay
