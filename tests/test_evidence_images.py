"""Hostile images: the pixel limit is checked from the header before anything is decoded, resizes that would
exceed it are refused, and any exception a decoder raises is that one image's failure (``BadImage``)."""
import numpy as np
import pytest

from senet_zoo.images import preprocess
from senet_zoo.images.image_size import image_size
from senet_zoo.images.preprocess import DEFAULT_MAX_IMAGE_PIXELS, BadImage, Preprocessing

from support.evidence import jpeg_claiming, png_header_only


def real_png(width: int, height: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return buf.tobytes()


def test_header_sizes_without_decoding():
    assert image_size(real_png(37, 11)) == (37, 11)
    assert image_size(png_header_only(100000, 1)) == (100000, 1)
    assert image_size(jpeg_claiming(65500, 65500)) == (65500, 65500)
    import cv2

    ok, buf = cv2.imencode(".bmp", np.zeros((5, 7, 3), np.uint8))
    assert image_size(buf.tobytes()) == (7, 5)  # other formats: Pillow's lazy open
    assert image_size(b"not an image at all") is None


def progressive_jpeg(width: int, height: int, claim: tuple[int, int] | None = None) -> bytes:
    """A real progressive JPEG (frame header SOF2, no SOF0), its header optionally rewritten to claim a size."""
    import struct

    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = bytearray(buf.tobytes())
    assert ok and b"\xff\xc0" not in data
    if claim is not None:
        sof = data.index(b"\xff\xc2")
        data[sof + 5:sof + 9] = struct.pack(">HH", claim[1], claim[0])
    return bytes(data)


def test_progressive_jpeg_size_is_read_from_its_sof2_header():
    assert image_size(progressive_jpeg(37, 11)) == (37, 11)
    assert image_size(progressive_jpeg(37, 11, claim=(30000, 20000))) == (30000, 20000)
    # 600 M pixels claimed: refused from the header, before libjpeg is asked to allocate them
    for name in ("caffe", "pil"):
        with pytest.raises(BadImage, match="more than the limit of 89,478,485"):
            Preprocessing(name, 256, 224).decode_rgb(progressive_jpeg(37, 11, claim=(30000, 20000)))


@pytest.mark.parametrize("name", ["caffe", "pil"])
@pytest.mark.parametrize("data, reason", [
    (lambda: png_header_only(100000, 1), "resizes to"),          # 63 KB that OpenCV would resize to 19.6 GB
    (lambda: png_header_only(20000, 20000), "400,000,000 pixels"),
    (lambda: jpeg_claiming(65500, 65500), "more than the limit of 89,478,485"),
])
def test_over_the_limit_is_a_bad_image_with_a_reason(name, data, reason):
    prep = Preprocessing(name, 256, 224)
    assert prep.max_pixels == DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(BadImage, match=reason):
        prep.decode_rgb(data())


def test_the_limit_can_be_raised_and_lowered():
    data = real_png(300, 260)
    assert Preprocessing("caffe", 256, 224).decode_rgb(data).shape == (224, 224, 3)
    with pytest.raises(BadImage, match="more than the limit of 1,000"):
        Preprocessing("caffe", 256, 224, max_pixels=1000).decode_rgb(data)
    preprocess.set_max_image_pixels(1000)
    try:
        assert Preprocessing("pil", 256, 224).max_pixels == 1000  # fixed when made: workers get it too
    finally:
        preprocess.set_max_image_pixels(None)
    assert Preprocessing("pil", 256, 224).max_pixels == DEFAULT_MAX_IMAGE_PIXELS


def test_a_decoder_exception_is_the_images_failure():
    # raised above our limit, the 65500x65500 header reaches OpenCV, whose own limit raises cv2.error
    prep = Preprocessing("caffe", 256, 224, max_pixels=10 ** 10)
    with pytest.raises(BadImage, match="OpenCV cannot decode it"):
        prep.decode_rgb(jpeg_claiming(65500, 65500))
