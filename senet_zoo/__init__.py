"""senet-zoo: the Caffe release of Squeeze-and-Excitation Networks in PyTorch, converted exactly and validated."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]


def create_model(name: str, pretrained: bool | str = False, **kwargs):
    """Build an eval-mode model; ``pretrained`` is False, True (verified Hub download) or a local
    converted folder / ``model.safetensors`` path."""
    from .models.factory import create_model as _create

    return _create(name, pretrained=pretrained, **kwargs)


def list_models() -> list[str]:
    from . import registry

    return registry.names()
