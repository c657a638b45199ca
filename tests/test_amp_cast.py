"""``--amp bf16`` casts the folded model to bf16 once: for every architecture the logits equal those of
``torch.autocast(bf16)`` around the fp32 model (how the loop ran before, and torch's own reference for mixed
precision), bit for bit on the CPU; the weights are bf16, so no weight is cast again per batch.
(``benchmarks/amp_cast.py`` measures both against exact fp32 on calibrated synthetic weights.)"""
from __future__ import annotations

import copy

import pytest
import torch

from senet_zoo import create_model, registry
from senet_zoo.validation.evaluate import EvalOptions, forward_fn
from senet_zoo.validation.runner import prepare_model

FAST = ("se_resnet50",)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in registry.names()])
def test_the_model_cast_once_gives_autocasts_logits(name):
    torch.manual_seed(0)
    base = create_model(name).eval()
    cpu = torch.device("cpu")
    autocast_model, cl, _, _ = prepare_model(copy.deepcopy(base), cpu, "fp32", channels_last=True)
    cast_model, _, folded, _ = prepare_model(base, cpu, "bf16")
    assert folded and next(autocast_model.parameters()).dtype == torch.float32
    assert {p.dtype for p in cast_model.parameters()} == {torch.bfloat16}
    opts = EvalOptions(device=cpu, precision="bf16", channels_last=True)
    mean, std = [0.48, 0.46, 0.41], [1 / 255] * 3
    images = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        reference = forward_fn(autocast_model, mean, std, opts)(images)
        ours = forward_fn(cast_model, mean, std, opts)(images)
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_unfolded_batchnorm_and_fp16_keep_autocast():
    base = create_model("se_resnet50").eval()
    cpu = torch.device("cpu")
    unfolded, _, folded, _ = prepare_model(copy.deepcopy(base), cpu, "bf16", fold=False)
    fp16, _, _, _ = prepare_model(base, cpu, "fp16")
    assert folded == 0 and next(unfolded.parameters()).dtype == torch.float32
    assert next(fp16.parameters()).dtype == torch.float32
