"""The canonical name of a validation image (``senet_zoo.val_names``), against literal names: the Hub's
``ILSVRC2012_val_00000001_n01751748.JPEG`` is ``ILSVRC2012_val_00000001.JPEG``; folders are kept; anything else
comes back unchanged."""
from __future__ import annotations

import pytest

from senet_zoo import val_names


@pytest.mark.parametrize("name, canonical, synset, number", [
    ("ILSVRC2012_val_00000001_n01751748.JPEG", "ILSVRC2012_val_00000001.JPEG", "n01751748", 1),
    ("n01751748/ILSVRC2012_val_00000001_n01751748.JPEG", "n01751748/ILSVRC2012_val_00000001.JPEG", "n01751748", 1),
    ("val/n01440764/ILSVRC2012_val_00050000_n01440764.JPEG", "val/n01440764/ILSVRC2012_val_00050000.JPEG",
     "n01440764", 50000),
    ("ILSVRC2012_val_00000042.JPEG", "ILSVRC2012_val_00000042.JPEG", None, 42),
    ("a/b/ILSVRC2012_val_00000042.JPEG", "a/b/ILSVRC2012_val_00000042.JPEG", None, 42),
    ("ILSVRC2012_val_00000001_n01751748.jpeg", "ILSVRC2012_val_00000001_n01751748.jpeg", None, None),
    ("ILSVRC2012_val_0000001_n01751748.JPEG", "ILSVRC2012_val_0000001_n01751748.JPEG", None, None),
    ("ILSVRC2012_val_00000001_n01751748.JPEG/x.JPEG", "ILSVRC2012_val_00000001_n01751748.JPEG/x.JPEG", None, None),
    ("photo.jpg", "photo.jpg", None, None),
])
def test_either_form_of_a_validation_name_and_anything_else(name, canonical, synset, number):
    assert val_names.split(name) == (canonical, synset)
    assert val_names.canonical(name) == canonical
    assert val_names.number(name) == number
