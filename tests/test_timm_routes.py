"""The routes a timm user takes to our weights, each checked for the preprocessing it resolves.

``hf-hub:`` (the local Hub server) and ``local-dir:`` read our ``config.json``; a plain timm name
(``legacy_seresnet50``) needs the documented ``pretrained_cfg_overlay`` (``senet_zoo.pretrained_cfg_overlay``),
without which timm normalises with its own ImageNet mean/std: the trap, shown here too. Outputs on real
JPEGs through timm's own transform are compared with the Caffe preprocessing that the published errors
were measured with (OpenCV decode and resize, Caffe's centre crop, BGR mean subtraction).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from senet_zoo.models.config import RGB_MEAN, STD
from support.hub_client import client_settings, upload
from support.hub_fixtures import TOKEN, shared_converted
from support.hub_server import FakeHub

REPO_ID = "my-org/se_resnet50"
EXPECTED = {"input_size": (3, 224, 224), "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center",
            "mean": RGB_MEAN, "std": STD}


def _jpegs(folder, n=4):
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(7)
    paths = []
    for i, (h, w) in enumerate([(300, 450), (512, 260), (256, 256), (333, 500)][:n]):
        # smooth content of photo-like scale, JPEG-compressed like the release's inputs
        small = rng.uniform(0, 255, (7, 9, 3)).astype(np.uint8)
        paths.append(folder / f"photo{i}.jpg")
        cv2.imwrite(str(paths[-1]), cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    from senet_zoo import create_model
    from senet_zoo.images.preprocess import caffe_rgb

    weights = shared_converted(tmp_path_factory)
    images = _jpegs(tmp_path_factory.mktemp("jpegs") / "photos")
    ours = create_model("se_resnet50", pretrained=weights)
    rgb = np.stack([caffe_rgb(p.read_bytes(), 256, 224) for p in images])          # (N, 224, 224, 3) uint8
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(RGB_MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    caffe_x = (x - mean) / std                       # = Caffe's input, pixel - (123, 117, 104)
    with torch.no_grad():
        caffe_logits = ours(caffe_x)
    hub = FakeHub(token=TOKEN).start()
    with pytest.MonkeyPatch.context() as mp:
        client_settings(mp, hub, tmp_path_factory.mktemp("hf-cache"))
        staged = tmp_path_factory.mktemp("repo") / "se_resnet50"
        staged.mkdir()
        for f in ("config.json", "model.safetensors"):
            shutil.copyfile(weights / f, staged / f)
        sha = upload(hub, REPO_ID, staged)
    yield dict(weights=weights, images=images, caffe_x=caffe_x, caffe_logits=caffe_logits, hub=hub, sha=sha)
    hub.stop()


def _timm(route, world, monkeypatch, tmp_path, **kw):
    import timm

    if route == "hf-hub":
        client_settings(monkeypatch, world["hub"], tmp_path / "hf-cache")
        return timm.create_model(f"hf-hub:{REPO_ID}", pretrained=True, **kw).eval()
    if route == "local-dir":
        return timm.create_model(f"local-dir:{world['weights']}", pretrained=True, **kw).eval()
    import senet_zoo

    overlay = senet_zoo.pretrained_cfg_overlay("se_resnet50", file=str(world["weights"] / "model.safetensors"))
    return timm.create_model("legacy_seresnet50", pretrained=True, pretrained_cfg_overlay=overlay, **kw).eval()


def _through_timm(model, images):
    import timm.data
    import torch
    from PIL import Image

    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        return config, x, model(x)


@pytest.mark.parametrize("route", ["hf-hub", "local-dir", "pretrained_cfg_overlay"])
def test_each_documented_route_preprocesses_like_caffe(route, world, monkeypatch, tmp_path):
    model = _timm(route, world, monkeypatch, tmp_path)
    config, x, logits = _through_timm(model, world["images"])
    for key, want in EXPECTED.items():
        assert config[key] == (pytest.approx(want) if isinstance(want, tuple) else want), key
    # timm's PIL pipeline (antialiased resize, rounded crop offsets) differs from Caffe's by a few grey
    # levels on average, in the model's own input units (pixels minus the mean)
    assert float((x - world["caffe_x"]).abs().mean()) < 4.0
    ref = world["caffe_logits"]
    rel = float((logits - ref).abs().max() / ref.std())
    print(f"{route}: max |Δlogit| / std = {rel:.3g}")
    assert rel < 0.25, rel
    assert bool((logits.argmax(1) == ref.argmax(1)).all())


def test_a_plain_timm_name_without_the_overlay_is_the_trap(world):
    """What the README warns about: the weights load, the preprocessing is timm's ImageNet default."""
    import timm

    model = timm.create_model("legacy_seresnet50", pretrained=True, pretrained_cfg_overlay=dict(
        file=str(world["weights"] / "model.safetensors"))).eval()
    config, x, logits = _through_timm(model, world["images"])
    assert config["mean"] == pytest.approx((0.485, 0.456, 0.406)) and config["std"] != pytest.approx(STD)
    assert float((x - world["caffe_x"]).abs().mean()) > 50.0   # inputs two orders of magnitude too small
    ref = world["caffe_logits"]
    rel = float((logits - ref).abs().max() / ref.std())
    print(f"trap: max |Δlogit| / std = {rel:.3g}, top-1 agreement {(logits.argmax(1) == ref.argmax(1)).sum()}")
    assert rel > 1.0, rel


def test_the_overlay_is_refused_for_the_model_timm_lacks():
    import senet_zoo
    from senet_zoo.errors import SenetZooError

    with pytest.raises(SenetZooError, match="timm has no SE-BN-Inception"):
        senet_zoo.pretrained_cfg_overlay("se_bn_inception")
