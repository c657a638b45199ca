"""The evaluation results the Hub reads (``hub/eval_results.py``): the card's ``model-index`` and the
``.eval_results/*.yaml`` files, parsed back with huggingface_hub's own parsers, and their links to the
records followed on the local Hub (tests/support/hub_server.py)."""
from __future__ import annotations

import re

import pytest
import yaml

from support.hub_client import client_settings, upload
from support.hub_fixtures import (TOKEN, reference_published, shared_converted, tiny_folder,
                                  write_record)
from support.hub_server import FakeHub

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB = "https://hub.example"


def _decision(tmp_path, name, records):
    from senet_zoo.hub import gate
    from senet_zoo.hub.records import find_records

    weights = tiny_folder(tmp_path / name, name)
    for kw in records:
        write_record(tmp_path / "runs", weights, **kw)
    decision = gate.evaluate(name, weights, find_records([tmp_path / "runs"]))
    assert decision.passed, decision.refusal
    return decision


def _index(decision, repo_id):
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from senet_zoo.hub.eval_results import model_index

    text = yaml.safe_dump({"model-index": model_index(decision, repo_id, {}, HUB)})
    return model_index_to_eval_results(yaml.safe_load(text)["model-index"])


def _files(decision, repo_id):
    from huggingface_hub import parse_eval_result_entries

    from senet_zoo.hub.eval_results import eval_result_files

    return {k: parse_eval_result_entries(yaml.safe_load(v))
            for k, v in eval_result_files(decision, repo_id, {}, HUB).items()}


def test_one_eval_results_file_per_setting_in_the_hubs_format(tmp_path):
    decision = _decision(tmp_path, "se_resnet50", [dict(top1_err=22.40, top5_err=6.34,
                                                        created="2025-06-01T12:00:00+00:00")])
    files = _files(decision, "my-org/se_resnet50")
    assert list(files) == [".eval_results/imagenet-1k-224.yaml"]
    link = f"{HUB}/my-org/se_resnet50/blob/main/validation/se_resnet50-224.json"
    got = [(e.dataset_id, e.task_id, e.value, e.dataset_revision, e.date, e.source_url, e.source_name)
           for e in files[".eval_results/imagenet-1k-224.yaml"]]
    assert got == [
        ("ILSVRC/imagenet-1k", "top1_accuracy", 77.6, None, "2025-06-01T12:00:00+00:00", link,
         "senet-zoo validation record validation/se_resnet50-224.json"),
        ("ILSVRC/imagenet-1k", "top5_accuracy", 93.66, None, "2025-06-01T12:00:00+00:00", link,
         "senet-zoo validation record validation/se_resnet50-224.json")]
    assert files[".eval_results/imagenet-1k-224.yaml"][1].notes == (
        "top-5 accuracy (%) on the validation split, 224x224 centre crop (shorter side resized to 256, caffe "
        "preprocessing), fp32, 50,000 images")


@pytest.mark.parametrize("uri, revision", [
    (f"hf://datasets/ILSVRC/imagenet-1k@{COMMIT}", COMMIT),          # read from that repository: its commit
    (f"hf://datasets/timm/imagenet-1k-wds@{COMMIT}", None),          # another repository's commit is not its
    (None, None),                                                     # a local folder
])
def test_the_dataset_revision_is_the_commit_the_images_came_from(tmp_path, uri, revision):
    decision = _decision(tmp_path, "se_resnet50", [dict(data={"source_uri": uri})])
    _, results = _index(decision, "my-org/se_resnet50")
    assert [r.dataset_revision for r in results] == [revision, revision]
    entries = _files(decision, "my-org/se_resnet50")[".eval_results/imagenet-1k-224.yaml"]
    assert [e.dataset_revision for e in entries] == [revision, revision]


def test_each_setting_links_its_own_record(tmp_path):
    # huggingface_hub's ModelCardData(eval_results=...) would merge the two settings into one result with
    # the 224 record as the only source: the model-index is written as a list for this
    decision = _decision(tmp_path, "senet154", [dict(img_size=224), dict(img_size=320)])
    name, results = _index(decision, "my-org/senet154")
    assert name == "senet154"
    base = f"{HUB}/my-org/senet154/blob/main/validation/"
    assert [(r.metric_name, r.metric_value, r.source_url) for r in results] == [
        ("Top-1 accuracy (224x224 centre crop)", 81.32, base + "senet154-224.json"),
        ("Top-5 accuracy (224x224 centre crop)", 95.53, base + "senet154-224.json"),
        ("Top-1 accuracy (320x320 centre crop)", 82.72, base + "senet154-320.json"),
        ("Top-5 accuracy (320x320 centre crop)", 96.21, base + "senet154-320.json")]
    files = _files(decision, "my-org/senet154")
    assert sorted(files) == [".eval_results/imagenet-1k-224.yaml", ".eval_results/imagenet-1k-320.yaml"]
    assert [e.source_url for e in files[".eval_results/imagenet-1k-320.yaml"]] == [base + "senet154-320.json"] * 2


def test_the_stand_ins_reference_runtime_record_claims_nothing(tmp_path):
    from senet_zoo.hub.eval_results import eval_result_files, model_index

    decision = _decision(tmp_path, "se_resnet50", [dict(published=reference_published(0.0, 0.0), n=64,
                                                        top1_err=0.0, top5_err=0.0)])
    assert model_index(decision, "my-org/x", {}, HUB) is None and eval_result_files(decision, "my-org/x", {}, HUB) == {}


def test_links_resolve_to_the_records_on_the_local_hub(tmp_path_factory, monkeypatch):
    from huggingface_hub import hf_hub_download, metadata_load

    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    weights = shared_converted(tmp_path_factory)
    runs = tmp_path_factory.mktemp("runs")
    write_record(runs, weights, top1_err=22.40, top5_err=6.34)
    staged = tmp_path_factory.mktemp("stage") / "se_resnet50"
    with FakeHub(token=TOKEN) as hub:
        push("se_resnet50", weights, "my-org/se_resnet50", find_records([runs]), dry_run=staged,
             log=lambda s: None, endpoint=hub.url)
        sha = upload(hub, "my-org/se_resnet50", staged)
        client_settings(monkeypatch, hub, tmp_path_factory.mktemp("hf-cache"))
        links = [r["source"]["url"] for r in metadata_load(staged / "README.md")["model-index"][0]["results"]]
        links += [e["source"]["url"] for e in yaml.safe_load((staged / ".eval_results/imagenet-1k-224.yaml")
                                                             .read_text())]
        assert len(links) == 3
        for link in links:
            m = re.fullmatch(re.escape(hub.url) + r"/my-org/se_resnet50/blob/main/(.+)", link)
            assert m, link
            got = hf_hub_download("my-org/se_resnet50", m.group(1), revision=sha)
            assert open(got, "rb").read() == (runs / "se_resnet50-224.json").read_bytes()
        got = hf_hub_download("my-org/se_resnet50", ".eval_results/imagenet-1k-224.yaml", revision=sha)
        assert open(got, "rb").read() == (staged / ".eval_results/imagenet-1k-224.yaml").read_bytes()
