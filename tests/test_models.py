"""Architectures: timm compatibility of names and outputs, and complexity against the paper."""
import pytest
import torch

from senet_zoo.models import build
from senet_zoo.models.complexity import complexity

TIMM_TWINS = {
    "se_resnet50": "legacy_seresnet50",
    "se_resnet101": "legacy_seresnet101",
    "se_resnet152": "legacy_seresnet152",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
    "se_resnext101_32x4d": "legacy_seresnext101_32x4d",
    "senet154": "legacy_senet154",
}


@pytest.mark.parametrize("name", ["se_resnet50", "se_resnext50_32x4d", "senet154"])
def test_state_dict_loads_strictly_into_timm_and_outputs_match(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = build(name).eval()
    for m in ours.modules():  # non-trivial statistics so BatchNorm matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    twin = timm.create_model(TIMM_TWINS[name], pretrained=False).eval()
    twin.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), twin(x), rtol=0, atol=0)


def test_all_timm_twins_have_identical_state_dict_layout():
    timm = pytest.importorskip("timm")
    for name, twin in TIMM_TWINS.items():
        ours = {k: tuple(v.shape) for k, v in build(name).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in timm.create_model(twin).state_dict().items()}
        assert ours == theirs, name


def test_320_input_works():
    with torch.inference_mode():
        assert build("se_bn_inception").eval()(torch.zeros(1, 3, 320, 320)).shape == (1, 1000)


def test_se_resnet50_complexity_against_the_paper():
    c = complexity("se_resnet50")
    # Pinned counts; the paper: SE-ResNet-50 3.87 GFLOPs (multiply-adds) vs ResNet-50 3.86, and
    # ~2.5 M parameters on top of ResNet-50's ~25 M.
    assert c.parameters == 28_088_024
    assert c.baseline_parameters == 25_557_032
    assert round(c.gmacs, 3) == 3.860 and round(c.baseline_gmacs, 3) == 3.858
    assert abs((c.parameters - c.baseline_parameters) / 1e6 - 2.5) < 0.05
    assert abs(c.gmacs - 3.87) < 0.02 and abs(c.baseline_gmacs - 3.86) < 0.01


@pytest.mark.parametrize("name,params,gmacs,paper", [
    ("se_bn_inception", 11_931_622, 2.033, 2.04),
    ("se_resnet101", None, None, 7.60),
    ("se_resnet152", None, None, 11.32),
    ("se_resnext50_32x4d", 27_559_896, 4.233, 4.25),
    ("se_resnext101_32x4d", None, None, 8.00),
])
def test_complexity_close_to_paper(name, params, gmacs, paper):
    c = complexity(name)
    if params is not None:
        assert c.parameters == params and round(c.gmacs, 3) == gmacs
    assert abs(c.gmacs - paper) / paper < 0.01
