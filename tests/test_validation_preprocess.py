"""Preprocessing, pixel for pixel, on real JPEG files written here.

The Caffe pipeline is checked against a straightforward implementation written in this file:

* decode: ``cv2.imread`` on the path (the library call Caffe's ``ReadImageToCVMat`` makes) with the flags
  spelled out here, separately from the pipeline's ``cv2.imdecode`` of the file's bytes; what is under test
  is the choice of flags (colour, orientation) and the channel handling, not libjpeg;
* resize: OpenCV's ``INTER_LINEAR`` written out in numpy from its definition: half-pixel centres, source
  columns clamped with zero weight, source rows clamped with their weights kept, 11-bit fixed-point
  coefficients and the vectorised rounding of the vertical pass; it is also checked to be within one grey
  level of an exact float64 bilinear;
* geometry, Caffe's integer crop offsets and BGR -> RGB: computed here independently.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")

from senet_zoo.errors import SenetZooError  # noqa: E402
from senet_zoo.images import preprocess  # noqa: E402
from senet_zoo.images.preprocess import BadImage, Preprocessing  # noqa: E402

COEF = 2048  # OpenCV INTER_RESIZE_COEF_SCALE (11 bits)


# ------------------------------------------------------------------ the independent implementation

def _source_positions(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    f = ((np.arange(dst) + 0.5) * (np.float64(src) / dst) - 0.5).astype(np.float32)
    i0 = np.floor(f).astype(np.int64)
    return i0, (f - i0).astype(np.float32)


def _fixed(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.rint((1 - a) * COEF).astype(np.int64), np.rint(a * COEF).astype(np.int64)


def reference_inter_linear(img: np.ndarray, w: int, h: int) -> np.ndarray:
    H, W = img.shape[:2]
    x0, ax = _source_positions(W, w)
    left, right = x0 < 0, x0 >= W - 1          # columns outside: nearest edge, weight 0
    ax = np.where(left | right, np.float32(0), ax)
    x0 = np.clip(x0, 0, W - 1)
    x1 = np.minimum(x0 + 1, W - 1)
    y0, ay = _source_positions(H, h)           # rows outside: clamped, weights kept
    y1 = np.clip(y0 + 1, 0, H - 1)
    y0 = np.clip(y0, 0, H - 1)
    (ax0, ax1), (by0, by1) = _fixed(ax), _fixed(ay)
    im = img.astype(np.int64)
    rows = im[:, x0] * ax0[None, :, None] + im[:, x1] * ax1[None, :, None]          # scale 2^11
    out = ((((rows[y0] >> 4) * by0[:, None, None]) >> 16)
           + (((rows[y1] >> 4) * by1[:, None, None]) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def float_bilinear(img: np.ndarray, w: int, h: int) -> np.ndarray:
    H, W = img.shape[:2]

    def axis(src, dst):
        f = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0, src - 1)
        i0 = np.minimum(np.floor(f).astype(int), src - 1)
        return i0, np.minimum(i0 + 1, src - 1), f - i0

    y0, y1, ay = axis(H, h)
    x0, x1, ax = axis(W, w)
    im = img.astype(np.float64)
    top = im[y0][:, x0] * (1 - ax)[None, :, None] + im[y0][:, x1] * ax[None, :, None]
    bot = im[y1][:, x0] * (1 - ax)[None, :, None] + im[y1][:, x1] * ax[None, :, None]
    return np.clip(np.rint(top * (1 - ay)[:, None, None] + bot * ay[:, None, None]), 0, 255).astype(np.uint8)


def reference_caffe(path, resize: int, crop: int) -> np.ndarray:
    """RGB (crop, crop, 3): decode, shorter side -> resize, Caffe centre crop, BGR -> RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    H, W = bgr.shape[:2]
    if H <= W:
        h, w = resize, int(resize * W / H)
    else:
        h, w = int(resize * H / W), resize
    r = bgr if (h, w) == (H, W) else reference_inter_linear(bgr, w, h)
    top, left = (h - crop) // 2, (w - crop) // 2
    return r[top:top + crop, left:left + crop, ::-1]


# ------------------------------------------------------------------------------------ test images

def smooth_image(rng, h, w, channels=3):
    coarse = rng.uniform(0, 255, (int(rng.integers(2, 8)), int(rng.integers(2, 8)), channels)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, channels)
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


SIZES = [(375, 500), (500, 333), (256, 256), (257, 300), (100, 180), (60, 61), (801, 199), (240, 320)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre")
    rng = np.random.default_rng(7)
    files = {}
    for i, (h, w) in enumerate(SIZES):
        p = folder / f"rgb_{i}_{h}x{w}.jpg"
        Image.fromarray(smooth_image(rng, h, w)).save(p, quality=92)
        files[p.stem] = p
    gray = folder / "gray.jpg"
    Image.fromarray(smooth_image(rng, 210, 290, 1)[:, :, 0], "L").save(gray, quality=90)
    cmyk = folder / "cmyk.jpg"
    Image.fromarray(smooth_image(rng, 230, 180, 3)).convert("CMYK").save(cmyk, quality=90)
    prog = folder / "progressive.jpg"
    Image.fromarray(smooth_image(rng, 300, 410)).save(prog, quality=88, progressive=True)
    rotated = folder / "exif_rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(smooth_image(rng, 200, 320)).save(rotated, quality=90, exif=exif)
    png = folder / "rgba.png"
    rgba = np.dstack([smooth_image(rng, 150, 170), np.full((150, 170), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(png)
    files.update(gray=gray, cmyk=cmyk, progressive=prog, rotated=rotated, png=png)
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    files.update(corrupt=corrupt, empty=empty)
    return files


# ------------------------------------------------------------------------------------------ tests

def test_reference_resize_is_bilinear_within_one_grey_level():
    rng = np.random.default_rng(0)
    for (H, W, h, w) in [(375, 500, 256, 341), (60, 61, 256, 260), (801, 199, 1030, 256)]:
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        diff = np.abs(reference_inter_linear(img, w, h).astype(int) - float_bilinear(img, w, h))
        assert diff.max() <= 1, (H, W)


@pytest.mark.parametrize("resize,crop", [(256, 224), (73, 64), (365, 320)])
def test_caffe_pipeline_matches_reference_pixel_for_pixel(jpegs, resize, crop):
    prep = Preprocessing("caffe", resize, crop)
    for name, path in jpegs.items():
        if name in ("corrupt", "empty"):
            continue
        ours = prep.load_rgb(path)
        ref = reference_caffe(path, resize, crop)
        assert ours.shape == (crop, crop, 3) and ours.dtype == np.uint8, name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_caffe_preprocess_file_is_bgr_for_the_converter(jpegs):
    bgr = preprocess.caffe_preprocess_file(jpegs["rgb_0_375x500"], 256, 224)
    np.testing.assert_array_equal(bgr, reference_caffe(jpegs["rgb_0_375x500"], 256, 224)[:, :, ::-1])
    assert bgr.flags["C_CONTIGUOUS"]
    with pytest.raises(SenetZooError, match="corrupt.jpg"):
        preprocess.caffe_preprocess_file(jpegs["corrupt"])


def test_decode_semantics(jpegs):
    data = jpegs["gray"].read_bytes()
    g = preprocess.caffe_decode(data)
    assert g.shape == (210, 290, 3) and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    # EXIF orientation is not applied (Caffe's OpenCV did not): stored 200 x 320 stays 200 x 320
    assert preprocess.caffe_decode(jpegs["rotated"].read_bytes()).shape == (200, 320, 3)
    c = preprocess.caffe_decode(jpegs["cmyk"].read_bytes())
    assert c.shape == (230, 180, 3)
    # CMYK decoded to colour close to the original (not inverted, not garbage)
    pil_rgb = np.asarray(Image.open(jpegs["cmyk"]).convert("RGB"), dtype=np.int16)
    assert np.abs(c[..., ::-1].astype(np.int16) - pil_rgb).mean() < 8
    assert preprocess.caffe_decode(jpegs["png"].read_bytes()).shape == (150, 170, 3)  # alpha dropped
    for bad in ("corrupt", "empty"):
        with pytest.raises(BadImage):
            Preprocessing("caffe", 256, 224).load_rgb(jpegs[bad])
        with pytest.raises(BadImage):
            Preprocessing("pil", 256, 224).load_rgb(jpegs[bad])
    with pytest.raises(BadImage):
        Preprocessing("caffe", 256, 224).load_rgb(jpegs["gray"].parent / "missing.jpg")


def test_libjpeg_warnings_never_reach_stderr(jpegs, capfd):
    """libjpeg reports damage with fprintf(stderr): a warned-but-decodable JPEG decodes as Caffe's OpenCV
    decodes it, silently; an undecodable one carries libjpeg's words in its reason, and nothing is printed."""
    import cv2

    clean = jpegs["rgb_0_375x500"].read_bytes()
    marker = clean.index(b"\xff\xdb")
    damaged = clean[:marker] + b"\x00\x00\x00" + clean[marker:]  # "3 extraneous bytes before marker 0xdb"
    np.testing.assert_array_equal(preprocess.caffe_decode(damaged), preprocess.caffe_decode(clean))
    garbage = b"\xff\xd8\xff\xe0" + np.random.default_rng(15).bytes(3000)
    with pytest.raises(BadImage, match="OpenCV cannot decode it: Corrupt JPEG data"):
        preprocess.caffe_decode(garbage)
    assert capfd.readouterr().err == ""
    # the hazard is real: OpenCV alone prints it
    cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR)
    assert "Corrupt JPEG data" in capfd.readouterr().err


def test_geometry_rules():
    assert preprocess.resized_size(375, 500, 256) == (256, 341)
    assert preprocess.resized_size(500, 375, 256) == (341, 256)
    assert preprocess.resized_size(300, 300, 256) == (256, 256)
    assert preprocess.caffe_offsets(256, 341, 224) == (16, 58)          # floor(117 / 2)
    assert preprocess.torchvision_offsets(256, 341, 224) == (16, 58)    # round(58.5) = 58 (banker's)
    assert preprocess.caffe_offsets(257, 300, 224) == (16, 38)
    assert preprocess.torchvision_offsets(257, 300, 224) == (16, 38)
    assert preprocess.caffe_offsets(259, 300, 224) == (17, 38)
    assert preprocess.torchvision_offsets(259, 300, 224) == (18, 38)    # round(17.5) = 18: they differ
    assert preprocess.resolve_resize(256, 224, 0.875)[0] == 256
    assert preprocess.resolve_resize(365, 320, 0.875)[0] == 365
    assert preprocess.resolve_resize(None, 288, 0.875)[0] == 329          # floor(288 / 0.875)
    assert preprocess.resolve_resize(None, 64, 0.875)[0] == 73


def test_pil_pipeline_equals_timm_eval_transform(jpegs):
    timm_tf = pytest.importorskip("timm.data.transforms_factory")
    for resize, crop in [(256, 224), (73, 64)]:
        tf = timm_tf.transforms_imagenet_eval(img_size=crop, crop_pct=crop / resize, interpolation="bilinear",
                                              use_prefetcher=True)
        prep = Preprocessing("pil", resize, crop)
        for name, path in jpegs.items():
            if name in ("corrupt", "empty"):
                continue
            theirs = tf(Image.open(path).convert("RGB")).numpy().transpose(1, 2, 0)
            np.testing.assert_array_equal(prep.load_rgb(path), theirs, err_msg=f"{name} {resize}/{crop}")


def test_device_normalisation_is_caffe_mean_subtraction_exactly(tmp_path):
    """What the model receives from validate's loop, with the mean and std of the converted weights' config,
    for uniform lossless images of known pixels: pixel - (123, 117, 104) per RGB channel, no scaling (Caffe's
    BGR mean subtraction; conv1's input channels are reversed at conversion)."""
    import torch

    from senet_zoo.models.config import RGB_MEAN, STD
    from senet_zoo.validation.data import load_eval_set
    from senet_zoo.validation.distributed import Dist
    from senet_zoo.validation.evaluate import EvalOptions, evaluate

    root = tmp_path / "ILSVRC2012_img_val"
    root.mkdir()
    rgb_pixels = [(0, 0, 0), (123, 117, 104), (255, 255, 255), (10, 20, 30)]
    for i, rgb in enumerate(rgb_pixels, 1):  # PNG content under validation names: decoded by content
        ok, buf = cv2.imencode(".png", np.full((9, 9, 3), rgb[::-1], np.uint8))
        (root / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(buf.tobytes())
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))  # float32: under bf16 the loop uses autocast

        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 1000)

    # bf16 with a float32 model: autocast wraps the model only, so the input is normalised in float32 as in
    # exact mode, and this process's precision settings (process-wide, see test_numerics_apis.py) stay as they are
    opts = EvalOptions(device=torch.device("cpu"), precision="bf16", batch_size=4, workers=0, show_progress=False,
                       probe=False)
    evaluate(Recorder(), load_eval_set(root), Preprocessing("caffe", 8, 8), list(RGB_MEAN), list(STD), opts,
             Dist(), log=lambda *_: None)
    x = torch.cat(seen)
    assert x.dtype == torch.float32 and x.shape == (4, 3, 8, 8)
    per_image = x.amax((2, 3)).tolist()
    assert x.amin((2, 3)).tolist() == per_image  # uniform crops
    assert per_image == [[-123.0, -117.0, -104.0], [0.0, 0.0, 0.0], [132.0, 138.0, 151.0], [-113.0, -97.0, -74.0]]
