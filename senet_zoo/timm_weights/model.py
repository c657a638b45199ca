"""timm's port as a model: our architecture (its module names are timm's ``legacy_se*``, so a timm state dict
loads strictly) with the checkpoint's tensors and the checkpoint's own input normalisation, so that
``validate --timm-weights`` runs it through the same harness as our conversion."""
from __future__ import annotations

import torch
from torch import nn

from .. import registry
from ..errors import SenetZooError
from ..models import build
from ..models.config import pretrained_cfg
from .checkpoint import TimmCheckpoint

COUNTER = "num_batches_tracked"
# The BatchNorm that takes the first convolution's output, in every residual model (models/senet.py's stem):
# where a port folds the input mean.
STEM_BN = {"layer0.conv1": "layer0.bn1"}


def timm_model(name: str, ckpt: TimmCheckpoint) -> nn.Module:
    """An eval-mode model of ``name`` holding ``ckpt``'s weights; ``pretrained_cfg`` carries the checkpoint's
    mean/std (timm's, for the legacy_se* weights) instead of ours."""
    reg = registry.get(name)
    if reg.timm_architecture is None:
        raise SenetZooError(None, f"{name}: timm has no {reg.display_name} weights to compare with")
    with torch.device("meta"):
        model = build(reg.architecture)
    model.to_empty(device="cpu")
    expected = model.state_dict()
    state = {k: torch.from_numpy(v.copy()) for k, v in ckpt.state.items()}
    for key, value in expected.items():   # 2018 checkpoints predate the BatchNorm counter (torch 0.4.1)
        if key.endswith(COUNTER) and key not in state:
            state[key] = torch.zeros_like(value, device="cpu")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape that does not fit
        raise SenetZooError(ckpt.file, f"does not fit {reg.display_name}: {str(e).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        what = f"missing {result.missing_keys[0]}" if result.missing_keys else f"unexpected {result.unexpected_keys[0]}"
        raise SenetZooError(ckpt.file, f"is not a {reg.timm_architecture} checkpoint ({what}, "
                            f"{len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected)")
    model.pretrained_cfg = {**pretrained_cfg(reg), "mean": list(ckpt.mean), "std": list(ckpt.std)}
    model.default_cfg = model.pretrained_cfg
    model.weights_metadata = {}
    return model.eval()
