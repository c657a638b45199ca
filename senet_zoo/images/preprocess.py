"""Image preprocessing for evaluation: the release's Caffe pipeline (default) and timm's PIL pipeline.

``caffe`` (what the published numbers were measured with: "center 224x224 crop from resized image with
shorter side = 256"):

1. decode with OpenCV like Caffe's ``ReadImageToCVMat``: ``cv2.imdecode(..., IMREAD_COLOR |
   IMREAD_IGNORE_ORIENTATION)``: always 3-channel BGR uint8 (grayscale replicated, CMYK converted by
   libjpeg), EXIF orientation *not* applied (OpenCV of 2017 did not rotate either);
2. resize so that the shorter side is ``resize`` (256 at 224), the longer side ``int(long * resize / short)``
   (torchvision's rule, so both pipelines see the same geometry), with ``cv2.INTER_LINEAR``: bilinear with
   half-pixel centres, no antialiasing;
3. centre crop ``crop`` x ``crop`` at Caffe's integer offsets ``((H - crop) // 2, (W - crop) // 2)``;
4. BGR -> RGB for the converted model (its first convolution takes RGB); the mean is subtracted on the
   device (see ``evaluate.py``): (x - mean*255) / (std*255) = pixel - (123, 117, 104), Caffe's input exactly.

``pil`` (timm / torchvision): ``PIL.Image.open().convert('RGB')``, ``resize`` with ``Image.BILINEAR`` (PIL
antialiases when reducing), centre crop at ``round((H - crop) / 2)`` (torchvision ``CenterCrop``).

Both produce RGB uint8 ``(crop, crop, 3)`` arrays; batches stay uint8 until they reach the device.

Pixel limit: an image whose header claims more than ``max_pixels`` pixels (default 89,478,485, Pillow's
``MAX_IMAGE_PIXELS``; ``--max-image-pixels`` raises it), or whose resize would produce more, is a bad image
(``BadImage``, skippable with ``--skip-bad-images``) before anything is decoded or allocated. Any exception
a decoder raises for one image is that image's ``BadImage``, never the run's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SenetZooError
from .decoder_messages import call_capturing_stderr
from .image_size import image_size, is_png_or_jpeg

PREPROCESS_NAMES = ("caffe", "pil")
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3
_max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """The pixel limit of ``Preprocessing`` objects made from now on in this process (``--max-image-pixels``)."""
    global _max_image_pixels
    if limit is not None and limit < 1:
        raise SenetZooError(None, f"--max-image-pixels must be at least 1, got {limit}")
    _max_image_pixels = DEFAULT_MAX_IMAGE_PIXELS if limit is None else int(limit)


class BadImage(Exception):
    """An image that cannot be decoded (unreadable, truncated beyond repair, not an image)."""


def resized_size(height: int, width: int, resize: int) -> tuple[int, int]:
    """(new height, new width): the shorter side becomes ``resize``, the longer ``int(long * resize / short)``
    (torchvision's ``Resize(int)`` rule)."""
    if width <= height:
        return int(resize * height / width), resize
    return resize, int(resize * width / height)


def caffe_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    return (height - crop) // 2, (width - crop) // 2


def torchvision_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def resolve_resize(eval_resize: int | None, img_size: int, crop_pct: float) -> tuple[int, str]:
    """The shorter-side resize for ``img_size``: the registry's evaluation setting when it has one (the
    published protocol: 256 at 224, 365 at 320), else timm's ``floor(img_size / crop_pct)``."""
    if eval_resize is not None:
        return int(eval_resize), "registry evaluation setting"
    return int(math.floor(img_size / crop_pct)), f"floor(img_size / crop_pct) with crop_pct {crop_pct} (timm)"


# ------------------------------------------------------------------------------------------------ caffe

def _cv2():
    import cv2

    return cv2


def check_pixels(data: bytes, resize: int, max_pixels: int) -> tuple[int, int] | None:
    """(width, height) from the header, refused (``BadImage``) when the image or its resize would exceed
    ``max_pixels``: checked before any decoder allocates what a hostile header claims. None: a PNG or JPEG
    whose decoder stops before reading any size (it is left to fail there, with its own words)."""
    size = image_size(data)
    if size is None:
        if is_png_or_jpeg(data):
            return None
        raise BadImage("cannot read its width and height from the header (not a PNG, JPEG or other image "
                       "format Pillow knows)")
    check_dimensions(*size, resize, max_pixels)
    return size


def check_dimensions(width: int, height: int, resize: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise BadImage(f"its header says {width}x{height} pixels")
    if width * height > max_pixels:
        raise BadImage(f"{width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,} "
                       "(--max-image-pixels raises it)")
    nh, nw = resized_size(height, width, resize)
    if nh * nw > max_pixels:
        raise BadImage(f"{width}x{height} resizes to {nw}x{nh} = {nh * nw:,} pixels, more than the limit of "
                       f"{max_pixels:,} (--max-image-pixels raises it)")


def caffe_decode(data: bytes, max_pixels: int | None = None, resize: int = 1) -> np.ndarray:
    """BGR uint8 (H, W, 3), as Caffe's OpenCV ``imread(IMREAD_COLOR)``; raises ``BadImage``."""
    cv2 = _cv2()
    buf = np.frombuffer(data, dtype=np.uint8)
    if not buf.size:
        raise BadImage("empty file")
    limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    checked = check_pixels(data, resize, limit)
    try:
        img, said = call_capturing_stderr(lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION))
    except cv2.error as e:  # e.g. OpenCV's own size limit: this image's failure
        raise BadImage(f"OpenCV cannot decode it: {str(e).strip().splitlines()[-1]}") from None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise BadImage("OpenCV cannot decode it" + (f": {said}" if said else ""))
    if checked is None:  # decoded although the header said nothing we could read: its resize is checked still
        check_dimensions(img.shape[1], img.shape[0], resize, limit)
    return img


def caffe_resize_crop(bgr: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Shorter side to ``resize`` (INTER_LINEAR), centre crop at Caffe's offsets; a BGR view (crop, crop, 3)."""
    cv2 = _cv2()
    h, w = bgr.shape[:2]
    nh, nw = resized_size(h, w, resize)
    if (nh, nw) != (h, w):
        bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if nh < crop or nw < crop:
        raise BadImage(f"resized to {nw}x{nh}, smaller than the {crop}x{crop} crop")
    y, x = caffe_offsets(nh, nw, crop)
    return bgr[y:y + crop, x:x + crop]


def read_file(path: str | Path) -> bytes:
    """The bytes of an image file; an unreadable file is that image's failure (``BadImage``)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BadImage(f"cannot read it ({e.strerror or e})") from None


def caffe_rgb(data: bytes, resize: int, crop: int, out: np.ndarray | None = None,
              max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 (crop, crop, 3) of an encoded image; written into ``out`` (C-contiguous) when given."""
    cv2 = _cv2()
    bgr = caffe_resize_crop(caffe_decode(data, max_pixels, resize), resize, crop)
    if out is None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    result = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=out)  # a channel swap, exact; SIMD, in place
    if result is not out and not np.shares_memory(result, out):  # pragma: no cover - defensive
        out[...] = result
    return out


def caffe_preprocess_file(path: str | Path, resize: int = 256, crop: int = 224,
                          max_pixels: int | None = None) -> np.ndarray:
    """The release's network input before mean subtraction: BGR uint8 (crop, crop, 3), contiguous.
    A file that cannot be decoded is a ``SenetZooError`` naming it."""
    limit = _max_image_pixels if max_pixels is None else max_pixels
    try:
        return np.ascontiguousarray(caffe_resize_crop(caffe_decode(read_file(path), limit, resize), resize, crop))
    except BadImage as e:
        raise SenetZooError(path, f"unreadable or corrupt image ({e})") from None


# -------------------------------------------------------------------------------------------------- pil

def pil_rgb(data: bytes, resize: int, crop: int, max_pixels: int | None = None) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    check_pixels(data, resize, limit)
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # our limit, checked above, decides; Pillow's would refuse at 2x its own
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_dimensions(*im.size, resize, limit)  # before the decode: Image.open reads the header only
            img = im.convert("RGB")
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise BadImage(f"Pillow cannot decode it ({e})") from None
    w, h = img.size
    nh, nw = resized_size(h, w, resize)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.BILINEAR)
    if nh < crop or nw < crop:
        raise BadImage(f"resized to {nw}x{nh}, smaller than the {crop}x{crop} crop")
    y, x = torchvision_offsets(nh, nw, crop)
    return np.asarray(img.crop((x, y, x + crop, y + crop)), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ the choice

@dataclass(frozen=True)
class Preprocessing:
    name: str          # "caffe" | "pil"
    resize: int        # shorter side
    crop: int          # = img_size
    resize_rule: str = "registry evaluation setting"
    # at most this many pixels decoded or produced by the resize; None: the process's limit when made
    # (set_max_image_pixels, from --max-image-pixels), fixed here so that worker processes get it too
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.max_pixels is None:
            object.__setattr__(self, "max_pixels", _max_image_pixels)
        if self.name not in PREPROCESS_NAMES:
            raise SenetZooError(None, f"unknown preprocessing '{self.name}' (one of {', '.join(PREPROCESS_NAMES)})")
        if self.crop < 1 or self.resize < self.crop:
            raise SenetZooError(None, f"resize {self.resize} must be at least the crop {self.crop}")

    def load_rgb(self, path: str | Path, out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (crop, crop, 3) of an image file, written into ``out`` when given; raises ``BadImage``."""
        return self.decode_rgb(read_file(path), out)

    def decode_rgb(self, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (crop, crop, 3) of encoded image bytes, written into ``out`` when given; raises ``BadImage``.

        Whatever a decoder raises for these bytes (``cv2.error``, Pillow's many exceptions, a ``MemoryError``)
        is this image's failure, so ``--skip-bad-images`` can skip it and nothing else stops the run."""
        try:
            if self.name == "caffe":
                return caffe_rgb(data, self.resize, self.crop, out, self.max_pixels)
            rgb = pil_rgb(data, self.resize, self.crop, self.max_pixels)
        except BadImage:
            raise
        except Exception as e:
            said = str(e).strip().splitlines()
            raise BadImage(f"the decoder failed ({type(e).__name__}{': ' + said[-1] if said else ''})") from None
        if out is None:
            return rgb
        out[...] = rgb
        return out

    def describe(self, mean: list[float], std: list[float]) -> dict:
        if self.name == "caffe":
            import cv2

            decoder = (f"OpenCV {cv2.__version__} cv2.imdecode(IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION): BGR, "
                       "no EXIF rotation, grayscale and CMYK to 3-channel BGR; then BGR -> RGB")
            interpolation = "cv2.INTER_LINEAR (bilinear, half-pixel centres, no antialiasing)"
            crop = "centre, offsets ((H - crop) // 2, (W - crop) // 2) (Caffe)"
        else:
            import PIL

            decoder = f"Pillow {PIL.__version__} Image.open().convert('RGB') (no EXIF rotation)"
            interpolation = "PIL Image.BILINEAR (antialiased when reducing; torchvision Resize)"
            crop = "centre, offsets round((H - crop) / 2) (torchvision CenterCrop)"
        return {
            "name": self.name,
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": interpolation,
            "decoder": decoder,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "resize_rule": self.resize_rule,
            "max_image_pixels": int(self.max_pixels),
            "resize_geometry": "shorter side = resize, longer side = int(longer * resize / shorter)",
            "crop_position": crop,
            "normalization": "on the device, float32: (x - 255*mean) / (255*std), x the RGB uint8 pixel",
        }
