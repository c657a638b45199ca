"""``validate --timm-weights``: timm's port evaluated through the same harness as this conversion (same images,
same record format), held to timm's own model class and normalisation run here image by image."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from senet_zoo import cli  # noqa: E402
from senet_zoo.files import sha256_file  # noqa: E402
from senet_zoo.timm_weights.checkpoint import read_safetensors  # noqa: E402
from support.hub_fixtures import shared_converted  # noqa: E402
from support.timm_port import IMAGENET_MEAN, IMAGENET_STD, cadene_port  # noqa: E402
from test_validation_preprocess import reference_caffe, smooth_image  # noqa: E402

SIZE, RESIZE = 64, 73
N = 5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    from PIL import Image

    weights = shared_converted(tmp_path_factory)
    root = tmp_path_factory.mktemp("timm-val")
    port = cadene_port(read_safetensors(weights / "model.safetensors"), fold_mean=True)
    pth = root / "se_resnet50-ce0d4300.pth"
    torch.save({k: torch.from_numpy(v) for k, v in port.items()}, pth)
    flat = root / "ILSVRC2012_img_val"
    flat.mkdir()
    rng = np.random.default_rng(5)
    for i in range(1, N + 1):
        h, w = (int(v) for v in rng.integers(60, 160, 2))
        Image.fromarray(smooth_image(rng, h, w)).save(flat / f"ILSVRC2012_val_{i:08d}.JPEG", quality=90)
    return weights, port, pth, flat


def _argv(world, *extra):
    weights, _, pth, flat = world
    return ["validate", "--model", "se_resnet50", "--data", str(flat), "--img-size", str(SIZE), "--device", "cpu",
            "--batch-size", "2", "--workers", "0", "--no-progress", *extra]


@pytest.mark.slow   # the fast tier keeps test_timm_weights.py::test_the_port_as_a_model_is_timms
def test_timms_port_is_evaluated_with_its_own_normalisation(world, tmp_path, monkeypatch):
    import timm
    import torch

    _, port, pth, flat = world
    monkeypatch.chdir(tmp_path)
    assert cli.main(_argv(world, "--timm-weights", str(pth), "--save-logits")) == 0
    out = tmp_path / "runs" / f"se_resnet50-{SIZE}-timm.json"       # the default name says which weights
    record = json.loads(out.read_text())
    w = record["weights"]
    assert (w["origin"], w["timm_weights"], w["sha256"]) == ("timm", str(pth), sha256_file(pth))
    assert w["normalisation_from"] == "timm's legacy_se* pretrained_cfg" and w["converter_version"] is None
    assert record["preprocess"]["mean"] == pytest.approx(list(IMAGENET_MEAN))
    assert record["preprocess"]["std"] == pytest.approx(list(IMAGENET_STD))
    assert "--timm-weights" in record["command"]

    # independently: timm's own legacy_seresnet50 with the port loaded strictly, timm's mean/std on the
    # reference Caffe crops, one image at a time
    model = timm.create_model("legacy_seresnet50", pretrained=False).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in port.items()}, strict=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as z:
        names, logits, top5 = list(z["names"]), z["logits"], z["top5"]
    assert names == sorted(p.name for p in flat.iterdir())
    with torch.inference_mode():
        for i, name in enumerate(names):
            rgb = np.ascontiguousarray(reference_caffe(flat / str(name), RESIZE, SIZE))
            x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - mean) / std
            ref = model(x)[0].numpy().astype(np.float64)
            np.testing.assert_allclose(logits[i], ref, atol=1e-3 * ref.std())
            assert top5[i].tolist() == np.argsort(-ref, kind="stable")[:5].tolist()


def test_timm_weights_refuse_what_does_not_go_with_them(world, tmp_path, capsys):
    weights, _, pth, _ = world
    rc = cli.main(_argv(world, "--timm-weights", str(pth), "--weights", str(weights), "--output",
                        str(tmp_path / "x.json")))
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == ("senet-zoo validate: error: --timm-weights evaluates timm's weights: it does "
                                       "not go with --weights")
    rc = cli.main(["validate", "--model", "se_bn_inception", "--timm-weights", str(pth), "--data", str(tmp_path),
                   "--device", "cpu", "--output", str(tmp_path / "y.json")])
    assert rc == 2 and "timm has no SE-BN-Inception weights" in capsys.readouterr().err
    rc = cli.main(["validate", "--all", "--weights-dir", str(tmp_path), "--timm-weights", str(pth), "--data",
                   str(tmp_path), "--device", "cpu"])
    assert rc == 2 and "--all takes --weights-dir and --output-dir, not --model, --weights, --timm-weights" in \
        capsys.readouterr().err
    assert not list(Path(tmp_path).glob("*.json"))
