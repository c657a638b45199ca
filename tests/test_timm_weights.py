"""``senet-zoo compare``: timm's ``legacy_se*`` port related to this conversion, tensor by tensor.

The timm-style checkpoints are derived from a converted stand-in by the transformation Cadene's port applied
(``support/timm_port.py``, sources in docs/timm.md); the derivation is first checked physically (the stem
computes the same on timm's input as ours on Caffe's), so the comparison is held to an independent
expectation: it must recognise the fold exactly, measure the mean and std back, and flag a perturbed tensor.
"""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from senet_zoo.models.config import RGB_MEAN, STD
from senet_zoo.timm_weights import relation
from senet_zoo.timm_weights.checkpoint import TIMM_MEAN, TIMM_STD, open_checkpoint, read_safetensors
from support.hub_fixtures import TOKEN, run_cli, shared_converted
from support.timm_port import IMAGENET_MEAN, IMAGENET_STD, cadene_port

KW = dict(first_conv="layer0.conv1", first_bn="layer0.bn1", ours_mean=RGB_MEAN, ours_std=STD,
          theirs_mean=IMAGENET_MEAN, theirs_std=IMAGENET_STD)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    folder = shared_converted(tmp_path_factory)
    return folder, read_safetensors(folder / "model.safetensors")


def _save_pth(path, state):
    import torch

    torch.save(collections.OrderedDict((k, torch.from_numpy(v)) for k, v in state.items()), path)
    return path


def _save_safetensors(path, state):
    from safetensors.numpy import save_file

    save_file(state, str(path))
    return path


def test_timms_normalisation_of_the_legacy_weights_is_imagenets():
    import timm

    assert TIMM_MEAN == IMAGENET_MEAN == (0.485, 0.456, 0.406) and TIMM_STD == IMAGENET_STD == (0.229, 0.224, 0.225)
    for name in ("legacy_seresnet50", "legacy_seresnet101", "legacy_seresnet152", "legacy_seresnext50_32x4d",
                 "legacy_seresnext101_32x4d", "legacy_senet154"):
        cfg = timm.models.get_pretrained_cfg(f"{name}.in1k")
        assert (cfg.mean, cfg.std, cfg.first_conv) == (TIMM_MEAN, TIMM_STD, "layer0.conv1"), name


@pytest.mark.parametrize("bgr", [False, True])
def test_the_derived_port_computes_our_stem_on_timms_input(ours, bgr):
    """Independent of compare: conv1+bn1 of the derived checkpoint on timm-normalised input equal ours on
    Caffe's input, away from the zero-padded border (where the folded mean cannot follow)."""
    import torch
    import torch.nn.functional as F

    _, state = ours
    theirs = cadene_port(state, fold_mean=True, bgr=bgr)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def stem(s, inp):
        y = F.conv2d(inp, torch.from_numpy(s["layer0.conv1.weight"]).double(), stride=2, padding=3)
        return F.batch_norm(y, *(torch.from_numpy(s[f"layer0.bn1.{k}"]).double() for k in
                                 ("running_mean", "running_var", "weight", "bias")), eps=1e-5)

    caffe_in = x * 255 - torch.tensor(RGB_MEAN).view(1, 3, 1, 1).double() * 255
    timm_in = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).double()) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    a, b = stem(state, caffe_in), stem(theirs, timm_in.flip(1) if bgr else timm_in)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(b[inner], a[inner], rtol=1e-5, atol=1e-4)
    assert (b[..., 0, 0] - a[..., 0, 0]).abs().max() > 1e-3   # the border differs: no fold is exact there


def test_compare_recognises_the_port_with_the_mean_folded(ours):
    _, state = ours
    cmp = relation.compare(state, cadene_port(state, fold_mean=True), **KW)
    by = {r.name: r for r in cmp.rows}
    assert by["layer0.conv1.weight"].relation == by["layer0.bn1.running_mean"].relation == "input fold"
    assert {r.relation for n, r in by.items() if n not in ("layer0.conv1.weight", "layer0.bn1.running_mean")
            and not n.endswith("num_batches_tracked")} == {"identical"}
    assert {by[n].relation for n in by if n.endswith("num_batches_tracked")} == {"counter"}
    assert len(by) == len(state)
    assert cmp.fold.reversed_channels is False
    np.testing.assert_allclose(cmp.fold.std, IMAGENET_STD, rtol=1e-6)
    np.testing.assert_allclose(cmp.fold.mean, IMAGENET_MEAN, atol=1e-6)
    assert cmp.same_function
    assert cmp.verdict() == ("THIS CONVERSION, FOLDED: the same weights, re-expressed for input normalised with "
                             "mean (0.4850, 0.4560, 0.4060), std (0.2290, 0.2240, 0.2250) (folded into "
                             "layer0.conv1 and layer0.bn1)")


def test_compare_says_when_the_mean_was_left_out_and_by_how_much(ours):
    _, state = ours
    cmp = relation.compare(state, cadene_port(state, fold_mean=False), **KW)
    assert cmp.fold.mean is None and not cmp.same_function
    assert {r.relation for r in cmp.rows if r.name.startswith("layer0.bn1.") and "tracked" not in r.name} == {"identical"}
    # 255 * (0.485, 0.456, 0.406) - (123, 117, 104): what timm's mean needs and no tensor absorbs
    np.testing.assert_allclose(cmp.fold.unfolded_shift, (0.675, -0.72, -0.47), atol=1e-9)
    assert "the network sees the release's input shifted by (-0.675, 0.720, 0.470)" in cmp.verdict()


def test_compare_recognises_a_conv1_that_kept_caffes_bgr_order(ours):
    _, state = ours
    cmp = relation.compare(state, cadene_port(state, fold_mean=True, bgr=True), **KW)
    assert cmp.fold.reversed_channels
    np.testing.assert_allclose(cmp.fold.std, IMAGENET_STD, rtol=1e-6)     # measured back in RGB order
    np.testing.assert_allclose(cmp.fold.mean, IMAGENET_MEAN, atol=1e-6)
    assert "input channels reversed" in next(r.detail for r in cmp.rows if r.name == "layer0.conv1.weight")


@pytest.mark.parametrize("name, index, delta", [
    ("layer3.2.conv2.weight", (0, 0, 0, 0), 1e-3),
    ("last_linear.bias", (7,), -0.5),
    ("layer0.conv1.weight", (1, 2, 3, 4), 1e-3),       # breaks the fold itself
    ("layer0.bn1.running_mean", (5,), 1e-2),           # breaks the folded mean
])
def test_a_perturbed_tensor_is_flagged_different(ours, name, index, delta):
    _, state = ours
    theirs = cadene_port(state, fold_mean=True)
    theirs[name] = theirs[name].copy()
    theirs[name][index] += np.float32(delta)
    cmp = relation.compare(state, theirs, **KW)
    different = {r.name: r for r in cmp.rows if r.relation == "different"}
    assert name in different and not cmp.same_function
    assert cmp.verdict().startswith("DIFFERENT")
    if not name.startswith("layer0."):
        assert list(different) == [name]
        assert different[name].max_abs_diff == pytest.approx(abs(delta), rel=1e-3)


def test_a_batchnorm_rewritten_with_the_same_affine_map_is_a_batchnorm_fold(ours):
    _, state = ours
    theirs = dict(state)
    p = "layer2.1.bn3"
    g, v = state[f"{p}.weight"].astype(np.float64), state[f"{p}.running_var"].astype(np.float64)
    theirs[f"{p}.weight"] = (2 * g).astype(np.float32)                     # gamma / sqrt(var + eps) kept
    theirs[f"{p}.running_var"] = (4 * (v + 1e-5) - 1e-5).astype(np.float32)
    cmp = relation.compare(state, theirs, **KW)
    rows = {r.name: r.relation for r in cmp.rows if r.name.startswith(p + ".")}
    assert rows == {f"{p}.weight": "batchnorm fold", f"{p}.running_var": "batchnorm fold",
                    f"{p}.bias": "identical", f"{p}.running_mean": "identical", f"{p}.num_batches_tracked": "identical"}
    assert cmp.verdict() == "IDENTICAL: the same weights (up to batchnorm fold)"


def test_compare_command_on_a_pth_read_without_pickle(ours, tmp_path, capfd):
    folder, state = ours
    pth = _save_pth(tmp_path / "se_resnet50-ce0d4300.pth", cadene_port(state, fold_mean=True))
    rc, out, err = run_cli(["compare", "se_resnet50", "--timm-weights", pth, "--weights", folder,
                            "--json", tmp_path / "cmp.json"], capfd)
    assert rc == 0, err
    assert "timm's legacy_se* pretrained_cfg" in out                      # a bare file: timm's normalisation
    lines = out.splitlines()
    assert any(l.startswith("layer0.conv1.weight") and "input fold" in l and "(58.395, 57.120, 57.375)" in l
               for l in lines)
    assert "THIS CONVERSION, FOLDED" in lines[-1]
    table = lines[lines.index(next(l for l in lines if l.startswith("TENSOR"))) + 1:]
    assert [l.split()[0] for l in table if l.strip() and not l.startswith(("tensors:", "  ", "THIS"))] == [
        "layer0.conv1.weight", "layer0.bn1.running_mean"]
    doc = json.loads((tmp_path / "cmp.json").read_text())
    assert doc["counts"] == {"input fold": 2, "identical": len(state) - 55, "counter": 53}
    assert len(doc["tensors"]) == len(state)


def test_compare_command_exits_1_on_a_different_tensor(ours, tmp_path, capfd):
    folder, state = ours
    theirs = cadene_port(state, fold_mean=True)
    theirs["layer4.0.se_module.fc1.weight"] = theirs["layer4.0.se_module.fc1.weight"] * np.float32(1.01)
    st = _save_safetensors(tmp_path / "theirs.safetensors", theirs)
    rc, out, err = run_cli(["compare", "se_resnet50", "--timm-weights", st, "--weights", folder], capfd)
    assert rc == 1, err
    assert "layer4.0.se_module.fc1.weight" in out and out.splitlines()[-1].startswith("DIFFERENT: 1 tensor(s)")


def test_compare_refuses_what_it_cannot_compare_in_one_line(ours, tmp_path, capfd):
    folder, _ = ours
    rc, out, err = run_cli(["compare", "se_bn_inception", "--timm-weights", tmp_path], capfd)
    assert rc == 2 and err.strip() == ("senet-zoo compare: error: se_bn_inception: timm has no SE-BN-Inception (no "
                                       "legacy_se* twin) to compare with")
    (tmp_path / "legacy.pth").write_bytes(b"\x80\x02\x8a\x0a" + b"\x00" * 60)
    rc, out, err = run_cli(["compare", "se_resnet50", "--timm-weights", tmp_path / "legacy.pth", "--weights",
                            folder], capfd)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "legacy (pre-1.6) format" in err


def test_a_hub_id_is_fetched_through_huggingface_hub_with_its_config(ours, tmp_path, monkeypatch):
    """timm's Hub repository (model.safetensors + config.json) on the local Hub: fetched, its mean/std read
    from config.json, then again offline from the cache."""
    from huggingface_hub import constants

    from support.hub_client import client_settings, upload
    from support.hub_server import FakeHub

    folder, state = ours
    repo = tmp_path / "repo"
    repo.mkdir()
    _save_safetensors(repo / "model.safetensors", cadene_port(state))
    (repo / "config.json").write_text(json.dumps({"architecture": "legacy_seresnet50", "num_classes": 1000,
                                                  "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25] * 3}}))
    with FakeHub(token=TOKEN) as hub:
        sha = upload(hub, "timm/legacy_seresnet50.in1k", repo)
        client_settings(monkeypatch, hub, tmp_path / "cache")
        ckpt = open_checkpoint("hf-hub:timm/legacy_seresnet50.in1k")
        assert ckpt.source == f"timm/legacy_seresnet50.in1k@{sha}" and ckpt.normalisation_from == "config.json"
        assert (ckpt.mean, ckpt.std) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        before = len(hub.requests)
        again = open_checkpoint(f"timm/legacy_seresnet50.in1k@{sha}")
        assert len(hub.requests) == before and again.sha256 == ckpt.sha256
    cmp = relation.compare(state, ckpt.state, **{**KW, "theirs_mean": ckpt.mean, "theirs_std": ckpt.std})
    # the weights say ImageNet's mean/std, the repository's config another: said, not hidden
    assert cmp.notes and "is not the one the checkpoint is used with" in cmp.notes[0]


def test_the_port_as_a_model_is_timms(ours, tmp_path):
    """What validate --timm-weights runs: our architecture with the port's tensors and timm's normalisation,
    equal to timm's own legacy_seresnet50 holding the same checkpoint."""
    import timm
    import torch

    from senet_zoo.timm_weights.model import timm_model

    _, state = ours
    port = cadene_port(state)
    ckpt = open_checkpoint(_save_pth(tmp_path / "port.pth", port))
    model = timm_model("se_resnet50", ckpt)
    assert model.pretrained_cfg["mean"] == list(IMAGENET_MEAN) and model.pretrained_cfg["std"] == list(IMAGENET_STD)
    theirs = timm.create_model("legacy_seresnet50", pretrained=False).eval()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in port.items()}, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x), rtol=1e-5, atol=1e-5)
    bad = dict(port)
    bad.pop("last_linear.bias")
    with pytest.raises(Exception, match="is not a legacy_seresnet50 checkpoint \\(missing last_linear.bias"):
        timm_model("se_resnet50", open_checkpoint(_save_safetensors(tmp_path / "bad.safetensors", bad)))
