"""``push --dry-run``: the exact folder that would be pushed, its model card, and timm loading it."""
from __future__ import annotations

import json
import shutil

import pytest

from support.hub_fixtures import (TOKEN, reference_published, run_cli, shared_converted, tiny_folder,
                                  write_record)

REPO_ID = "my-org/se_resnet50"


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    weights = shared_converted(tmp_path_factory)
    runs = tmp_path_factory.mktemp("runs")
    write_record(runs, weights, top1_err=22.40, top5_err=6.34, created="2025-06-01T00:00:00+00:00")
    write_record(runs, weights, top1_err=22.61, top5_err=6.41, stem="se_resnet50-224-pil", preprocess="pil")
    return weights, runs


@pytest.fixture(scope="module")
def staged(validated, tmp_path_factory):
    weights, runs = validated
    dest = tmp_path_factory.mktemp("hub") / "se_resnet50"
    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    push("se_resnet50", weights, REPO_ID, find_records([runs]), dry_run=dest, log=lambda s: None)
    return dest


def test_dry_run_writes_exactly_the_pushed_folder_and_uploads_nothing(validated, tmp_path, capfd, monkeypatch):
    import huggingface_hub

    def no_network(*a, **k):
        raise AssertionError("a dry run must not talk to the Hub")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", no_network)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    weights, runs = validated
    dest = tmp_path / "hub" / "se_resnet50"
    rc, out, err = run_cli(["push", "--model", "se_resnet50", "--weights", weights, "--repo-id", REPO_ID,
                            "--records", runs, "--dry-run", dest], capfd)
    assert rc == 0, err
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [".eval_results/imagenet-1k-224.yaml", "README.md", "config.json", "model.safetensors",
                     "validation/se_resnet50-224-pil.json", "validation/se_resnet50-224-pil.npz",
                     "validation/se_resnet50-224.json", "validation/se_resnet50-224.npz"]
    for f in ("config.json", "model.safetensors"):
        assert (dest / f).read_bytes() == (weights / f).read_bytes()
    for f in files[4:]:
        assert (dest / f).read_bytes() == (runs / f.split("/")[1]).read_bytes()
    assert "gate 224: REPRODUCED" in out and "nothing uploaded" in out
    assert TOKEN not in out + err
    assert not any(TOKEN.encode() in p.read_bytes() for p in dest.rglob("*") if p.is_file())


def test_model_card_yaml_parses_and_carries_the_records_numbers(staged, validated):
    from huggingface_hub import ModelCard

    card = ModelCard.load(staged / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.library_name == "timm"
    assert data.pipeline_tag == "image-classification" and data.datasets == ["ILSVRC/imagenet-1k"]
    assert {"timm", "image-classification", "senet-zoo"} <= set(data.tags)
    # the gate's record only: the PIL run is shown in the body, not claimed in the metadata
    assert [(r.metric_type, r.metric_value, r.metric_args) for r in data.eval_results] == [
        ("accuracy", 77.6, None), ("accuracy", 93.66, {"k": 5})]
    body = card.text
    weights, runs = validated
    meta = json.loads((weights / "config.json").read_text())["senet_zoo"]
    for needle in ("| 22.37 | 6.36 |",                         # release README
                   "| 23.29 | 6.62 |",                         # paper, labelled separately
                   "**22.40**", "**6.34**", "+0.03 | -0.02",   # reproduced, and the difference
                   meta["source_sha256"], f"converter version `{meta['converter_version']}`",
                   "NVIDIA H100 80GB HBM3", "OpenCV", "without antialiasing",
                   "| 224 | pil | fp32 | 50,000 | 22.61 | 6.41 |",
                   f'timm.create_model("hf-hub:{REPO_ID}", pretrained=True)',
                   'senet_zoo.create_model("se_resnet50", pretrained=True)',
                   "Albanie, Samuel", "@inproceedings{hu2018senet"):
        assert needle in body, needle
    assert "node-1" not in body  # the validation host name stays in the record


def test_timm_loads_the_staged_folder_with_our_outputs(staged, validated):
    import timm
    import torch

    import senet_zoo

    weights, _ = validated
    theirs = timm.create_model(f"local-dir:{staged}", pretrained=True).eval()
    ours = senet_zoo.create_model("se_resnet50", pretrained=weights)
    assert theirs.pretrained_cfg["mean"] == ours.pretrained_cfg["mean"]
    # timm's label metadata round-trips: names in output order, descriptions keyed by them, as timm's own
    # ImageNetInfo has them; timm's CustomDatasetInfo accepts the pair (it refuses a name without description)
    names, descriptions = theirs.pretrained_cfg["label_names"], theirs.pretrained_cfg["label_descriptions"]
    info = timm.data.ImageNetInfo()
    assert list(names) == list(info.label_names()) and list(descriptions) == list(names)
    assert descriptions == info.label_descriptions(as_dict=True)
    custom = timm.data.CustomDatasetInfo(label_names=names, label_descriptions=descriptions)
    assert custom.index_to_description(1) == "goldfish, Carassius auratus"
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))


def test_force_with_reason_goes_into_the_card(tmp_path, capfd):
    weights = tiny_folder(tmp_path / "w")
    (tmp_path / "runs").mkdir()  # a records folder with no record in it
    base = ["push", "--model", "se_resnet50", "--weights", weights, "--repo-id", REPO_ID,
            "--records", tmp_path / "runs"]
    rc, out, err = run_cli(base + ["--dry-run", tmp_path / "a"], capfd)
    assert rc == 3 and len(err.strip().splitlines()) == 1
    assert "refusing to push SE-ResNet-50: no validation record" in err and "--force --reason" in err
    assert not (tmp_path / "a").exists()
    rc, out, err = run_cli(base + ["--dry-run", tmp_path / "b", "--force"], capfd)
    assert rc == 2 and "--force needs --reason" in err
    rc, out, err = run_cli(base + ["--dry-run", tmp_path / "c", "--force", "--reason",
                                   "ImageNet access pending; numbers follow"], capfd)
    assert rc == 0, err
    from huggingface_hub import ModelCard

    card = ModelCard.load(tmp_path / "c" / "README.md")
    assert "published without passing senet-zoo's validation gate" in card.text
    assert "Reason given: ImageNet access pending; numbers follow" in card.text
    assert not card.data.eval_results                      # nothing measured, nothing claimed
    assert not (tmp_path / "c" / "validation").exists()


def test_se_bn_inception_is_not_labelled_as_timm(tmp_path):
    from huggingface_hub import ModelCard

    from senet_zoo.hub.push import push

    weights = tiny_folder(tmp_path / "w", name="se_bn_inception")
    write_record(tmp_path / "runs", weights)
    from senet_zoo.hub.records import find_records

    push("se_bn_inception", weights, "my-org/se-bn-inception", find_records([tmp_path / "runs"]),
         dry_run=tmp_path / "hub", log=lambda s: None)
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.library_name == "senet-zoo" and "timm" not in card.data.tags
    assert "timm has no SE-BN-Inception architecture" in card.text and "hf-hub:" not in card.text


def test_dry_run_folder_is_replaced_only_if_it_is_an_earlier_staging(validated, staged, tmp_path):
    from senet_zoo.errors import SenetZooError
    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    weights, runs = validated
    records = find_records([runs])
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SenetZooError, match="holds other files"):
        push("se_resnet50", weights, REPO_ID, records, dry_run=other, log=lambda s: None)
    assert (other / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"
    shutil.copytree(staged, again)
    push("se_resnet50", weights, REPO_ID, records, dry_run=again, log=lambda s: None)
    assert (again / "README.md").is_file()


def test_run_demo_hub_stages_the_stand_in_and_loads_it_back_through_timm(tmp_path_factory, tmp_path):
    from senet_zoo.hub.demo import run_demo_hub

    weights = shared_converted(tmp_path_factory)
    record = write_record(tmp_path / "validation", weights, n=48, top1_err=100 * 3 / 48, top5_err=0.0,
                          published=reference_published(100 * 3 / 48, 0.0))
    lines = []
    staged = run_demo_hub(tmp_path / "hub", weights, [record], log=lines.append)
    assert staged == tmp_path / "hub" / "se_resnet50"
    assert (staged / "README.md").is_file() and (staged / "validation" / record.name).is_file()
    text = "\n".join(lines)
    assert "gate 224: REPRODUCED" in text and "identical outputs" in text, text
    from huggingface_hub import ModelCard

    card = ModelCard.load(staged / "README.md")
    assert not card.data.eval_results  # generated images: no ImageNet accuracy is claimed
    assert "compared with the reference runtime, not with the published errors" in card.text


def test_the_card_shows_timms_port_beside_the_reproduction_and_says_what_differs(validated, tmp_path):
    from huggingface_hub import ModelCard

    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    weights, runs = validated
    ported = tmp_path / "runs"
    shutil.copytree(runs, ported)
    port = {"origin": "timm", "timm_weights": "timm/legacy_seresnet50.in1k@" + "c" * 40,
            "normalisation_from": "config.json"}
    write_record(ported, weights, top1_err=22.55, top5_err=6.40, stem="se_resnet50-224-timm",
                 weights_sha256="c" * 64, weights=port)
    dest = tmp_path / "stage"
    push("se_resnet50", weights, REPO_ID, find_records([ported]), dry_run=dest, log=lambda s: None,
         endpoint="https://huggingface.co")
    assert (dest / "validation" / "se_resnet50-224-timm.json").read_bytes() == \
        (ported / "se_resnet50-224-timm.json").read_bytes()
    card = ModelCard.load(dest / "README.md")
    # the metadata claims this conversion's numbers only
    assert [r.metric_value for r in card.data.eval_results] == [77.6, 93.66]
    body = card.text
    for needle in ("| **Reproduced here** (senet-zoo, 50,000 images, 95% CI) | **22.40**",
                   "| timm's `legacy_seresnet50` weights (Cadene's port), same harness, caffe preprocessing, "
                   "50,000 images | 22.55",
                   "- timm's port, validation `validation/se_resnet50-224-timm.json`: checkpoint "
                   "`timm/legacy_seresnet50.in1k@" + "c" * 40,
                   "## Compared with timm's `legacy_seresnet50` weights",
                   "(0.675, −0.720, −0.470)",
                   "senet-zoo compare se_resnet50 --timm-weights timm/legacy_seresnet50.in1k",
                   "senet-zoo validate --model se_resnet50 --timm-weights timm/legacy_seresnet50.in1k --data"):
        assert needle in body, needle
