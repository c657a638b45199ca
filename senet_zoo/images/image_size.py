"""Width and height of an encoded image from its header, without decoding it.

Decoders allocate what the header claims: a 63 KB 1x100000 PNG or a JPEG header claiming 65500x65500 costs
gigabytes once decoded (or resized). ``Preprocessing`` checks the size read here against its pixel limit
before it lets OpenCV or Pillow decode anything. PNG and JPEG (what ImageNet is) are parsed here; anything
else is opened lazily by Pillow, which reads the header only.
"""
from __future__ import annotations

import io
import struct

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic); not DHT C4, JPG C8, DAC CC
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# segments libjpeg reads (or skips by their length) before the frame header: DHT, DAC, DQT, DRI, APPn, COM
_SEGMENTS = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The frame size, reading markers the way libjpeg's ``read_markers`` does (bytes between markers are
    skipped, fill bytes too); None where libjpeg itself stops with an error before any frame header, so
    such a file costs OpenCV nothing to refuse."""
    pos, n = 2, len(data)
    while True:
        while pos < n and data[pos] != 0xFF:  # libjpeg warns "extraneous bytes before marker" and goes on
            pos += 1
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker == 0x00:  # a stuffed zero is no marker: libjpeg keeps looking
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if not (marker in _SOF or marker in _SEGMENTS):
            return None  # SOI again, EOI, SOS before a frame, unknown markers: libjpeg errors out here
        if pos + 2 > n:
            return None
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        if length < 2:
            return None
        if marker in _SOF:
            if pos + 7 > n or length < 8:
                return None
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width, height
        pos += length


def is_png_or_jpeg(data: bytes) -> bool:
    return data.startswith(_PNG) or data.startswith(b"\xff\xd8")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header states it, or None when no header we know gives it (for PNG and JPEG:
    when the decoder itself would stop before reading a frame size)."""
    if data.startswith(_PNG):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: our own limit decides
            with Image.open(io.BytesIO(data)) as im:  # lazy: the header only
                return tuple(im.size)
    except Exception:  # Pillow raises many kinds for bytes it cannot identify; None is the answer to all
        return None
