"""The push gate: which validation records vouch for which weights, and every way of refusing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.hub.gate import evaluate
from senet_zoo.hub.records import find_records, load_record
from support.hub_fixtures import reference_published, tiny_folder, write_record


def gate(weights, runs, name="se_resnet50"):
    return evaluate(name, weights, find_records([runs]))


@pytest.fixture
def weights(tmp_path):
    return tiny_folder(tmp_path / "out" / "se_resnet50")


def test_passes_with_a_sound_reproduced_record(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, weights)
    d = gate(weights, runs)
    assert d.passed, d.refusal
    assert d.accepted[224].record.path == runs / "se_resnet50-224.json"
    assert d.accepted[224].comparison == "release"


def test_picks_a_reproduced_record_among_others_and_keeps_the_rest_as_evidence(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, weights, top1_err=22.9, stem="pil", preprocess="pil", created="2025-01-02T00:00:00+00:00")
    write_record(runs, weights, stem="caffe", created="2025-01-01T00:00:00+00:00")
    d = gate(weights, runs)
    assert d.passed and d.accepted[224].record.path.name == "caffe.json"
    assert [c.record.path.name for c in d.others] == ["pil.json"]


def test_refuses_without_any_record(weights, tmp_path):
    d = gate(weights, tmp_path / "runs")
    assert not d.passed and "no validation record of SE-ResNet-50 at 224" in d.refusal


def test_refuses_a_record_of_other_weights(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, tiny_folder(tmp_path / "older", seed=1))
    d = gate(weights, runs)
    assert not d.passed
    assert "no validation record at 224 for these weights" in d.refusal and "is for other weights" in d.refusal


def test_refuses_not_reproduced(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, weights, top1_err=22.60)
    d = gate(weights, runs)
    assert not d.passed and "says NOT REPRODUCED at 224" in d.refusal and "22.60/6.36" in d.refusal


@pytest.mark.parametrize("damage, expect", [
    ("delete", "predictions file se_resnet50-224.npz is missing"),
    ("rewrite", "predictions file se_resnet50-224.npz has changed"),
])
def test_refuses_a_stale_record(weights, tmp_path, damage, expect):
    runs = tmp_path / "runs"
    write_record(runs, weights)
    npz = runs / "se_resnet50-224.npz"
    if damage == "delete":
        npz.unlink()
    else:
        with np.load(npz) as z:
            data = dict(z)
        data["top5"][:10, 0] = (data["labels"][:10] + 7) % 1000
        np.savez(npz, **data)
    d = gate(weights, runs)
    assert not d.passed and expect in d.refusal


def test_refuses_numbers_that_do_not_match_the_predictions(weights, tmp_path):
    runs = tmp_path / "runs"
    path = write_record(runs, weights, top1_err=22.60, verdict="NOT REPRODUCED")
    record = json.loads(path.read_text())
    record["results"]["top1_err"], record["verdict"] = 22.37, "REPRODUCED"   # edited by hand
    path.write_text(json.dumps(record))
    d = gate(weights, runs)
    assert not d.passed and "does not match its predictions file" in d.refusal


def test_refuses_a_verdict_that_does_not_follow_from_its_numbers(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, weights, top1_err=22.60, verdict="REPRODUCED")
    d = gate(weights, runs)
    assert not d.passed and "says REPRODUCED but its errors 22.60/6.36 are more than 0.1 pp" in d.refusal


def test_refuses_a_record_made_for_another_converter_version(weights, tmp_path):
    runs = tmp_path / "runs"
    write_record(runs, weights, weights={"converter_version": "0.0.9"})
    d = gate(weights, runs)
    assert not d.passed and "made for converter 0.0.9, the weights say 0.1.0" in d.refusal


@pytest.mark.parametrize("kwargs, expect", [
    ({"n": 1000}, "covers 1000 images"),
    ({"tolerance": 0.5, "top1_err": 22.6}, "tolerance 0.5 pp, wider than the registry's 0.1"),
    ({"published": {"top1_err": 23.0, "top5_err": 6.36, "source": "a blog"}, "top1_err": 23.0},
     "not the registry's published numbers"),
    ({"img_size": 256}, "no validation record of SE-ResNet-50 at 224"),
])
def test_refuses_records_that_disagree_with_the_registry(weights, tmp_path, kwargs, expect):
    runs = tmp_path / "runs"
    if kwargs.get("img_size") == 256:  # no registry setting: write a 224 record and relabel it
        path = write_record(runs, weights)
        record = json.loads(path.read_text())
        record["img_size"] = 256
        path.write_text(json.dumps(record))
    else:
        write_record(runs, weights, **kwargs)
    d = gate(weights, runs)
    assert not d.passed and expect in d.refusal
    if kwargs.get("img_size") == 256:
        assert any("uses img_size 256, not an evaluation setting" in note for note in d.notes)


def test_release_comparisons_need_weights_converted_from_the_release(tmp_path):
    w = tiny_folder(tmp_path / "w", source_sha256="f" * 64)
    write_record(tmp_path / "runs", w)
    d = gate(w, tmp_path / "runs")
    assert not d.passed and "not the release SE-ResNet-50.caffemodel" in d.refusal


def test_accepts_the_stand_in_compared_with_the_reference_runtime(tmp_path):
    # the demo's stand-in: synthetic caffemodel (unknown hash), a few images, reference-runtime numbers
    w = tiny_folder(tmp_path / "w", source_sha256="f" * 64)
    write_record(tmp_path / "runs", w, n=64, published=reference_published(50.0, 25.0), top1_err=50.0,
                 top5_err=25.0)
    d = gate(w, tmp_path / "runs")
    assert d.passed, d.refusal
    assert d.accepted[224].comparison == "reference"


def test_senet154_at_320_is_required_once_a_record_exists(tmp_path):
    w = tiny_folder(tmp_path / "w", name="senet154")
    runs = tmp_path / "runs"
    write_record(runs, w)
    d = gate(w, runs, "senet154")
    assert d.passed and list(d.accepted) == [224]
    assert "no record at 320 for these weights (optional)" in d.notes
    write_record(runs, w, img_size=320, top1_err=17.60)            # paper_320: 17.28 -> not reproduced
    d = gate(w, runs, "senet154")
    assert not d.passed and "says NOT REPRODUCED at 320" in d.refusal
    write_record(runs, w, img_size=320, stem="senet154-320-rerun", created="2999-01-01T00:00:00+00:00")
    d = gate(w, runs, "senet154")
    assert d.passed and d.accepted[320].comparison == "paper" and d.accepted[320].record.path.stem.endswith("rerun")


def test_weights_folder_problems_are_errors(tmp_path):
    w = tiny_folder(tmp_path / "w")
    with pytest.raises(SenetZooError, match="holds weights of 'se_resnet50'"):
        evaluate("se_resnet101", w, [])
    (w / "model.safetensors").write_bytes((w / "model.safetensors").read_bytes()[:-3])
    with pytest.raises(SenetZooError, match="truncated"):
        evaluate("se_resnet50", w, [])
    with pytest.raises(SenetZooError, match="no such converted folder"):
        evaluate("se_resnet50", tmp_path / "nowhere", [])


def test_explicit_record_files_must_be_records(tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(SenetZooError, match="not a validation record"):
        load_record(bad)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "other.json").write_text("[1, 2]")  # other JSON in runs/ is skipped
    assert find_records([runs]) == []


TIMM_PORT = {"origin": "timm", "timm_weights": "timm/legacy_seresnet50.in1k@" + "c" * 40,
             "normalisation_from": "config.json"}


def test_a_record_of_timms_port_never_vouches_and_is_kept_for_the_card(weights, tmp_path):
    runs = tmp_path / "runs"
    # timm's port, reproducing the release numbers on the full set: it is not these weights
    write_record(runs, weights, stem="se_resnet50-224-timm", weights_sha256="c" * 64, weights=TIMM_PORT)
    d = gate(weights, runs)
    assert not d.passed and "no validation record of SE-ResNet-50 at 224" in d.refusal
    assert [c.record.path.name for c in d.timm_port] == ["se_resnet50-224-timm.json"]
    write_record(runs, weights)
    d = gate(weights, runs)
    assert d.passed and d.accepted[224].record.path.name == "se_resnet50-224.json" and d.others == []
    assert [r.path.name for r in d.records] == ["se_resnet50-224.json", "se_resnet50-224-timm.json"]
    # a port's record that is not sound (another number than its predictions give) is not shown
    bad = load_record(runs / "se_resnet50-224-timm.json")
    data = dict(bad.data, results={**bad.data["results"], "top1_err": 30.0})
    (runs / "se_resnet50-224-timm.json").write_text(json.dumps(data))
    assert gate(weights, runs).timm_port == []
