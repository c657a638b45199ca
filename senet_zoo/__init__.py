"""senet-zoo: the Caffe release of Squeeze-and-Excitation Networks in PyTorch, converted exactly and validated."""
from __future__ import annotations

from .version import __version__

__all__ = ["__version__", "create_model", "list_models", "pretrained_cfg_overlay"]


def create_model(name: str, pretrained: bool | str = False, **kwargs):
    """Build an eval-mode model; ``pretrained`` is False, True (verified Hub download) or a local
    converted folder / ``model.safetensors`` path."""
    from .models.factory import create_model as _create

    return _create(name, pretrained=pretrained, **kwargs)


def list_models() -> list[str]:
    from . import registry

    return registry.names()


def pretrained_cfg_overlay(name: str, file: str | None = None) -> dict:
    """For timm users of a plain architecture name: ``timm.create_model(<timm architecture>, pretrained=True,
    pretrained_cfg_overlay=senet_zoo.pretrained_cfg_overlay(name, file=".../model.safetensors"))``. Without
    it timm normalises with its own ImageNet mean/std, not the release's. ``hf-hub:`` and ``local-dir:``
    read ``config.json`` and need no overlay."""
    from .models.config import pretrained_cfg_overlay as _overlay

    return _overlay(name, file)
