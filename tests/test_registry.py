"""The registry: shipped in the package, one entry per released model, the facts of the release."""
from importlib import resources

import pytest

from senet_zoo import registry
from conftest import REPO

RELEASE = {  # (caffemodel bytes, sha256 (OpenVINO's model zoo), top-1 err, top-5 err (release README))
    "se_bn_inception": (47855246, "0660aa2b867f7353794d3ac02081d9178ac0709e8d8d75c29290dba4bc10ce03", 23.62, 7.04),
    "se_resnet50": (112602669, "72880fde3bd29b324bb302c80f49a098b8970597494c56525fd410a8d2ed5993", 22.37, 6.36),
    "se_resnet101": (197806200, "09777ce1202087954ee34ae2566cf611d03d2d8195ced0fe51b612ebf951d729", 21.75, 5.72),
    "se_resnet152": (268009578, "bbe7fc5b5068b7cd4b12ce1bb78f61bd3f48238a372e70ab9c0724afa778e5d1", 21.34, 5.54),
    "se_resnext50_32x4d": (110550637, "f12c6b53c2dcd0f38f388d3d5f98cbfc039357e84842e661f28a49719dd52219", 20.97, 5.54),
    "se_resnext101_32x4d": (196447403, "78dc95c9b768fdb32a0a3981a686edaf655df82973b051d818bae523c9a93c90", 19.81, 4.96),
    "senet154": (None, None, 18.68, 4.47),  # hash unknown: recorded as unknown, not guessed
}

PAPER = {  # (top-1 err, top-5 err): arXiv:1709.01507, Table 2 (SE-* columns) and Table 8 (SENet-154)
    "se_bn_inception": (24.23, 7.14),
    "se_resnet50": (23.29, 6.62),
    "se_resnet101": (22.38, 6.07),
    "se_resnet152": (21.57, 5.73),
    "se_resnext50_32x4d": (21.10, 5.49),
    "se_resnext101_32x4d": (20.70, 5.01),
    "senet154": (18.68, 4.47),
}


def test_packaged_registry_is_the_root_file():
    packaged = resources.files("senet_zoo").joinpath("data/checkpoints.yaml").read_text(encoding="utf-8")
    assert packaged == (REPO / "checkpoints.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(RELEASE))
def test_release_facts(name):
    ckpt = registry.get(name)
    size, sha, top1, top5 = RELEASE[name]
    assert (ckpt.caffemodel_bytes, ckpt.caffemodel_sha256) == (size, sha)
    published = ckpt.published_for(224)
    assert (published.top1_err, published.top5_err) == (top1, top5)
    assert "README" in published.source and "paper" in ckpt.published
    assert ckpt.eval_setting(224).resize == 256 and ckpt.tolerance_pp == 0.10


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_numbers_are_kept_apart_and_labelled(name):
    paper = registry.get(name).published["paper"]
    assert (paper.top1_err, paper.top5_err) == PAPER[name] and "paper" in paper.source


def test_senet154_is_also_evaluated_at_320_against_the_paper():
    ckpt = registry.get("senet154")
    assert ckpt.eval_setting(320) is not None and "paper" in ckpt.published_for(320).source
    assert (ckpt.published_for(320).top1_err, ckpt.published_for(320).top5_err) == (17.28, 3.79)


def test_unknown_model_is_a_one_line_error():
    from senet_zoo.errors import SenetZooError

    with pytest.raises(SenetZooError, match="known models: se_bn_inception"):
        registry.get("resnet50")


def test_registry_override_for_maintainers(tmp_path, monkeypatch):
    text = (REPO / "checkpoints.yaml").read_text().replace("repo_id: null, revision: null, sha256: null}",
                                                          "repo_id: org/x, revision: abc, sha256: 00}", 1)
    (tmp_path / "c.yaml").write_text(text)
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "c.yaml"))
    assert registry.get("se_bn_inception").hub_repo_id == "org/x"
    monkeypatch.delenv(registry.REGISTRY_ENV)
    assert registry.get("se_bn_inception").hub_repo_id is None


def test_a_setting_naming_published_numbers_the_entry_lacks_is_refused(tmp_path, monkeypatch):
    from senet_zoo.errors import SenetZooError

    text = (REPO / "checkpoints.yaml").read_text()
    bad = text.replace("      - {img_size: 224, resize: 256}\n    hub: {repo_id: null, revision: null, sha256: null}\n\n"
                       "  se_resnet101:",
                       "      - {img_size: 224, resize: 256, published: relase}\n"
                       "    hub: {repo_id: null, revision: null, sha256: null}\n\n  se_resnet101:", 1)
    assert bad != text
    (tmp_path / "c.yaml").write_text(bad)
    monkeypatch.setenv(registry.REGISTRY_ENV, str(tmp_path / "c.yaml"))
    with pytest.raises(SenetZooError) as e:
        registry.get("se_resnet50")
    assert str(e.value) == (f"{tmp_path / 'c.yaml'}: not a valid registry (ValueError: se_resnet50: eval img_size "
                            "224 names published 'relase', which the entry lacks (release, paper))")
