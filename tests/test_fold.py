"""BatchNorm folding (``senet_zoo/models/fold.py``): the folded model is the unfolded one up to float32
rounding, on the images validation is tested and demonstrated with: max |dlogit| / std <= 1e-4 and the same
top-5 on every image. That is the condition under which ``validate`` folds by default."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from senet_zoo import create_model
from senet_zoo.models import ARCHITECTURES, build
from senet_zoo.models.fold import fold_batchnorm

from test_validation_run import RESIZE, SIZE, flat, release  # noqa: F401  (module fixtures)

TOL = 1e-4


def _random_model(name: str, seed: int = 0) -> nn.Module:
    """The architecture with quick seeded weights (He-scaled convolutions) and non-trivial BatchNorm
    statistics, so folding has something to fold; built on the meta device first (no slow default init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = build(name)
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for name_, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                # a small gain at the end of each residual branch keeps the random deep net well
                # conditioned (as trained SENets are), so float32 rounding is not amplified block by block
                gain = 0.2 if name_.endswith("bn3") and ".layer" not in name_ and "layer" in name_ else 1.0
                m.weight.copy_((torch.rand(c, generator=g) + 0.5) * gain)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.num_batches_tracked.zero_()
    return model


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, bool]:
    """(max |a - b| / std(a), identical top-5 on every row)."""
    ratio = float((a - b).abs().max() / a.std())
    same = bool((a.topk(5, dim=1).indices == b.topk(5, dim=1).indices).all())
    return ratio, same


@pytest.mark.parametrize("name", ["se_bn_inception", "se_resnext50_32x4d",
                                  pytest.param("senet154", marks=pytest.mark.slow)])
def test_every_batchnorm_is_folded_and_the_outputs_agree(name):
    model = _random_model(name)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, count = fold_batchnorm(model)
    assert count == n_bn and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # a copy: the original is untouched
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        ratio, _ = agreement(model(x), folded(x))
    assert ratio <= TOL, ratio


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_all_seven_architectures_fold_completely(name):
    """On the meta device (structure only): every BatchNorm2d is recognised as following a convolution."""
    with torch.device("meta"):
        model = build(name).eval()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, count = fold_batchnorm(model, inplace=True)
    assert n_bn > 0 and count == n_bn


def test_training_mode_and_stray_batchnorm_are_refused():
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(build("se_resnet50").train())
    stray = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3)).eval()
    with pytest.raises(ValueError, match="not after a convolution"):
        fold_batchnorm(stray)


def _caffe_batch(paths, resize, crop):
    from senet_zoo.images.preprocess import Preprocessing

    prep = Preprocessing("caffe", resize, crop)
    rgb = np.stack([prep.load_rgb(p) for p in paths])
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float()
    return x - torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)


def test_folded_converted_model_agrees_on_the_test_images(release, flat):  # noqa: F811
    model = create_model("se_resnet50", pretrained=release[2])
    folded, _ = fold_batchnorm(model)
    x = _caffe_batch(sorted(flat.iterdir()), RESIZE, SIZE)
    with torch.inference_mode():
        ratio, same = agreement(model(x), folded(x))
        ratio_cl, same_cl = agreement(model(x), folded.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)))
    assert ratio <= TOL and same, ratio
    assert ratio_cl <= TOL and same_cl, ratio_cl  # validate's CPU default: folded + channels_last


@pytest.mark.slow
def test_folded_converted_model_agrees_on_the_demo_images(release, tmp_path):  # noqa: F811
    from senet_zoo.validation.demo import write_demo_images

    paths = write_demo_images(tmp_path / "demo", 32, 0)
    model = create_model("se_resnet50", pretrained=release[2])
    folded, _ = fold_batchnorm(model)
    folded = folded.to(memory_format=torch.channels_last)
    x = _caffe_batch(paths, 256, 224)
    with torch.inference_mode():
        ratio, same = agreement(model(x), folded(x.contiguous(memory_format=torch.channels_last)))
    assert ratio <= TOL and same, ratio



def test_validate_folds_by_default_and_no_fold_bn_keeps_the_batchnorms(release, flat, tmp_path):  # noqa: F811
    """The record says what ran: ``run.bn_folded`` counts the folded BatchNorms, 0 with ``--no-fold-bn``;
    the predictions agree either way."""
    import json

    from test_validation_run import common, validate

    runs = {}
    for flag in ("--fold-bn", "--no-fold-bn"):
        out = tmp_path / f"r{flag}.json"
        validate(common(release, flat, out, "--limit", "3", flag))
        with np.load(out.with_suffix(".npz")) as z:
            runs[flag] = json.loads(out.read_text())["run"]["bn_folded"], z["top5"]
    assert runs["--fold-bn"][0] > 0 and runs["--no-fold-bn"][0] == 0
    np.testing.assert_array_equal(runs["--fold-bn"][1], runs["--no-fold-bn"][1])
