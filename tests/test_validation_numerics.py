"""What ``set_numerics`` leaves in torch, read back from torch itself (not from what the function returns)."""
import pytest
import torch

from senet_zoo.validation import numerics


@pytest.fixture(autouse=True)
def flags_restored():
    b = torch.backends
    saved = (b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark,
             torch.get_float32_matmul_precision())
    yield
    b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark = saved[:4]
    torch.set_float32_matmul_precision(saved[4])


def test_exact_mode_leaves_torch_deterministic_without_tf32_or_autotuning():
    b = torch.backends
    # the opposite of exact first, so that every flag below was changed by set_numerics
    b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.deterministic, b.cudnn.benchmark = True, True, False, True
    torch.set_float32_matmul_precision("medium")
    numerics.set_numerics("fp32")
    assert b.cudnn.deterministic is True and b.cudnn.benchmark is False
    assert b.cuda.matmul.allow_tf32 is False and b.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"


def test_mixed_precision_lets_cudnn_choose():
    b = torch.backends
    b.cudnn.deterministic, b.cudnn.benchmark = True, False
    numerics.set_numerics("bf16")
    assert b.cudnn.deterministic is False and b.cudnn.benchmark is True
    assert torch.get_float32_matmul_precision() == "high"
