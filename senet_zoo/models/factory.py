"""``create_model``: an architecture from the registry, with converted weights loaded and verified."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from .. import jsonio, registry
from ..errors import SenetZooError
from ..weights.download import fetch_weights
from ..weights.folder import resolve_weights
from . import build
from .config import pretrained_cfg

def load_state(weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (never a pickle)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise SenetZooError(weights, f"not a readable safetensors file ({str(e).splitlines()[0]})") from None
    return state, metadata


def load_weights(model: nn.Module, name: str, path: str | Path) -> dict[str, str]:
    ckpt = registry.get(name)
    weights, config = resolve_weights(path)
    state, metadata = load_state(weights)
    stored = metadata.get("model")
    if config is not None:
        try:
            stored = jsonio.load_path(config).get("senet_zoo", {}).get("model", stored)
        except (ValueError, AttributeError) as e:
            raise SenetZooError(config, f"not valid JSON ({e})") from None
    if stored and stored != name:
        raise SenetZooError(weights, f"holds weights of '{stored}', not '{name}'")
    # A model built on the meta device gets fresh storage first: tensors assigned straight from the file's
    # buffer are not SIMD-aligned, and the kernels then round differently from a normally built model.
    if any(p.is_meta for p in model.parameters()):
        model.to_empty(device="cpu")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        what = (f"missing {result.missing_keys[0]}" if result.missing_keys else
                f"unexpected {result.unexpected_keys[0]}")
        raise SenetZooError(weights, f"does not fit {ckpt.display_name} ({what}, "
                            f"{len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected)")
    return metadata


def create_model(name: str, pretrained: bool | str | Path = False, **kwargs) -> nn.Module:
    """An eval-mode model. Input: RGB in [0, 1], normalised with ``model.pretrained_cfg``'s mean/std;
    output: 1000 logits in sorted-wnid order (torchvision/timm/ImageFolder order)."""
    ckpt = registry.get(name)
    if pretrained is True:
        pretrained = fetch_weights(name)
    # With weights to load, the architecture is built on the meta device: no random initialisation (seconds
    # for SENet-154) and no second copy of the weights in memory; load_weights assigns the loaded tensors.
    with torch.device("meta") if pretrained else contextlib.nullcontext():
        model = build(ckpt.architecture, **kwargs)
    model.pretrained_cfg = pretrained_cfg(ckpt)
    model.default_cfg = model.pretrained_cfg
    if pretrained:
        try:
            model.weights_metadata = load_weights(model, name, pretrained)
        except RuntimeError as e:  # shape mismatches from load_state_dict
            raise SenetZooError(pretrained, f"does not fit {ckpt.display_name}: {str(e).splitlines()[-1].strip()}") from None
    return model.eval()
