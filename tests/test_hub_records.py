"""Validation records read and checked (``hub/records.py``): each field from a hand-written file, and each
problem ``check_record`` finds, told by its whole line (the gate's tests, tests/test_hub_gate.py, check the
decisions built on them)."""
from __future__ import annotations

import hashlib
import json

import pytest

from senet_zoo.errors import SenetZooError
from senet_zoo.hub.records import check_record, find_records, load_record
from support.hub_fixtures import tiny_folder, write_record

SCHEMA = "senet-zoo/validation-record/1"
RELEASE = "hujie-frank/SENet README (released caffemodel, single centre crop)"


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_a_hand_written_record_reads_field_by_field(tmp_path):
    path = write_json(tmp_path / "runs" / "a.json", {
        "schema": SCHEMA, "model": "se_resnet50", "img_size": 224.0, "verdict": "REPRODUCED",
        "weights": {"sha256": "ab" * 32, "origin": "timm"}, "created": None,
        "results": {"top1_err": 22.4, "top5_err": 6.3, "num_images": 7},
        "predictions": {"file": "a.npz"}, "published": {"source": "Reference Runtime: OpenCV dnn"}})
    r = load_record(path)
    assert (r.model, r.img_size, r.verdict, r.weights_sha256) == ("se_resnet50", 224, "REPRODUCED", "ab" * 32)
    assert (r.top1_err, r.top5_err, r.num_images, r.created) == (22.4, 6.3, 7, "")
    assert r.predictions_path == tmp_path / "runs" / "a.npz"
    assert r.published_source == "Reference Runtime: OpenCV dnn"
    assert r.is_timm_port and r.is_reference_runtime
    assert r.short() == f"{path} (se_resnet50 @224, REPRODUCED)"
    assert r.get("weights", "sha256", "deeper", default="none") == "none"     # a str is not a section
    assert r.get("results", "top9_err", default=-1) == -1
    assert r.get("nowhere") is None


def test_a_bare_record_has_nothing_it_does_not_say(tmp_path):
    r = load_record(write_json(tmp_path / "b.json", {
        "schema": SCHEMA, "img_size": "224", "created": "2026-01-02", "predictions": {"file": ""},
        "published": {"source": "reference runtime"}, "weights": {"origin": "ours"}}))
    assert (r.model, r.img_size, r.verdict, r.weights_sha256) == ("None", None, "None", None)
    assert (r.top1_err, r.top5_err, r.num_images, r.created) == (None, None, None, "2026-01-02")
    assert r.predictions_path is None and r.published_source == "reference runtime"
    assert not r.is_timm_port and not r.is_reference_runtime   # the prefix is "reference runtime: "
    assert load_record(write_json(tmp_path / "c.json", {"schema": SCHEMA})).published_source == ""


@pytest.mark.parametrize("text, message", [
    (None, "no such validation record"),
    ("{", "not a readable validation record ("),
    ("[1]", "not a validation record (schema 'list', expected 'senet-zoo/validation-record/1')"),
    ('{"schema": "x/2"}', "not a validation record (schema 'x/2', expected 'senet-zoo/validation-record/1')"),
    ("{}", "not a validation record (schema None, expected 'senet-zoo/validation-record/1')"),
])
def test_what_is_not_a_record_is_told_by_file_and_reason(tmp_path, text, message):
    path = tmp_path / "r.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SenetZooError) as e:
        load_record(path)
    assert str(e.value).startswith(f"{path}: {message}")


def test_records_are_found_once_each_in_name_order(tmp_path):
    runs = tmp_path / "runs"
    for name in ("b.json", "sub/a.json", "c.json"):
        write_json(runs / name, {"schema": SCHEMA, "model": name})
    (runs / "notes.json").write_text('{"hello": 1}')
    (runs / "a.txt").write_text("{}")
    found = find_records([runs, runs / "c.json", tmp_path / "missing"], files=[runs / "c.json"])
    assert [r.path.relative_to(runs).as_posix() for r in found] == ["c.json", "b.json", "sub/a.json"]
    with pytest.raises(SenetZooError, match="not a validation record"):
        find_records(files=[runs / "notes.json"])
    with pytest.raises(SenetZooError, match="not a validation record"):
        find_records([runs / "notes.json"])          # a file named as a folder is named explicitly
    (alone,) = find_records([runs / "c.json"])       # a file among the folders is read as a record
    assert alone.path == runs / "c.json" and alone.model == "c.json"
    assert [r.model for r in find_records([runs / "c.json", runs / "sub"])] == ["c.json", "sub/a.json"]
    assert find_records([tmp_path / "missing"]) == [] and find_records() == []


@pytest.fixture
def weights(tmp_path):
    return tiny_folder(tmp_path / "w")


def checked(path, **kwargs):
    return check_record(load_record(path), **kwargs)


def test_a_sound_record_of_the_release_numbers(weights, tmp_path):
    path = write_record(tmp_path / "runs", weights, weights_sha256="c" * 64)
    c = checked(path, weights_sha256="c" * 64)
    assert c.problems == [] and c.sound and c.reproduced
    assert (c.comparison, c.published_label) == ("release", RELEASE)
    assert c.recomputed == pytest.approx((22.37, 6.36, 50_000), abs=1e-9)
    c = checked(write_record(tmp_path / "runs", weights, top1_err=22.60))
    assert c.sound and not c.reproduced


def test_a_record_for_other_or_stale_weights(weights, tmp_path):
    path = write_record(tmp_path / "runs", weights, weights_sha256="c" * 64,
                        weights={"converter_version": "0.1.0", "source_sha256": "e" * 64})
    assert checked(path, weights_sha256="ab" * 32, converter_version="0.2.0", source_sha256="d" * 64).problems == [
        "is for other weights (sha256 cccccccccccc…, these are abababababab…)",
        "is stale: made for converter 0.1.0, the weights say 0.2.0",
        "is stale: made for weights converted from eeeeeeeeeeee…, these come from dddddddddddd…"]
    assert checked(path, weights_sha256="c" * 64, converter_version="0.1.0", source_sha256="e" * 64).problems == []
    assert checked(path, weights_sha256="c" * 64).problems == []        # nothing to compare with: no problem
    bare = write_record(tmp_path / "runs", weights, stem="bare", weights_sha256="c" * 64)
    assert checked(bare, weights_sha256="c" * 64, converter_version="0.2.0", source_sha256="d" * 64).problems == []
    number = write_record(tmp_path / "runs", weights, stem="n", weights_sha256="c" * 64,
                          weights={"converter_version": 0.5})
    assert checked(number, weights_sha256="c" * 64, converter_version="0.5").problems == []


@pytest.mark.parametrize("results", [{"top1_err": None}, {"top5_err": "6.36"}, {"top1_err": True},
                                     {"num_images": 50_000.0}])
def test_a_record_without_results_is_refused_before_anything_else(weights, tmp_path, results):
    path = write_record(tmp_path / "runs", weights, model="nonesuch", img_size=224, results=results)
    assert checked(path, weights_sha256="0" * 64).problems[1:] == [
        "has no results (top1_err, top5_err, num_images)"]


def test_an_infinite_error_is_no_result(weights, tmp_path):
    # the JSON reader refuses Infinity; a record built in memory may still hold one
    record = load_record(write_record(tmp_path / "runs", weights))
    record.data["results"]["top5_err"] = float("inf")
    assert check_record(record).problems == ["has no results (top1_err, top5_err, num_images)"]


def test_a_record_without_its_evidence(weights, tmp_path):
    runs = tmp_path / "runs"
    assert checked(write_record(runs, weights, stem="a", weights={"sha256": None})).problems == [
        "names no weights sha256"]
    assert checked(write_record(runs, weights, stem="b", predictions={"file": ""})).problems == [
        "names no predictions file"]
    path = write_record(runs, weights, stem="c")
    (runs / "c.npz").write_bytes(b"not an npz")
    data = json.loads(path.read_text())
    data["predictions"]["sha256"] = hashlib.sha256(b"not an npz").hexdigest()
    path.write_text(json.dumps(data))
    (problem,) = checked(path).problems
    assert problem.startswith("has an unreadable predictions file c.npz (") and problem.endswith(")")


@pytest.mark.parametrize("stated, problem", [
    ({"top1_err": 22.375, "top5_err": 6.355}, None),                   # rounded: within 0.005
    ({"top1_err": 22.376}, "states top-1/top-5 err 22.376/6.360 on 50000 images, the predictions give "
                           "22.370/6.360 on 50000"),
    ({"top5_err": 6.354}, "states top-1/top-5 err 22.370/6.354 on 50000 images, the predictions give "
                          "22.370/6.360 on 50000"),
    ({"num_images": 49_999}, "states top-1/top-5 err 22.370/6.360 on 49999 images, the predictions give "
                             "22.370/6.360 on 50000"),
])
def test_stated_numbers_must_be_those_of_the_predictions(weights, tmp_path, stated, problem):
    path = write_record(tmp_path / "runs", weights, results=stated)
    problems = checked(path).problems
    if problem is None:
        assert problems == []
    else:
        assert f"does not match its predictions file: {problem}" in problems


@pytest.mark.parametrize("key, value", [("top1_err", None), ("top5_err", "6.36"), ("tolerance_pp", None)])
def test_reproduced_needs_published_numbers_and_a_tolerance(weights, tmp_path, key, value):
    path = write_record(tmp_path / "runs", weights)
    data = json.loads(path.read_text())
    (data if key == "tolerance_pp" else data["published"])[key] = value      # edited by hand
    path.write_text(json.dumps(data))
    problems = checked(path).problems
    assert problems[0] == "says REPRODUCED without published numbers and a tolerance"
    # a published top-1 alone is still compared with the registry's (a missing one cannot be)
    assert problems[1:] == ([] if key != "top5_err" else [
        f"compares against 22.37/None ({RELEASE}), not the registry's published numbers (22.37/6.36)"])


def test_reproduced_must_follow_from_the_recomputed_errors(weights, tmp_path):
    path = write_record(tmp_path / "runs", weights, top1_err=22.60, verdict="REPRODUCED",
                        results={"top1_err": 22.37})
    assert checked(path).problems == [
        "does not match its predictions file: states top-1/top-5 err 22.370/6.360 on 50000 images, the "
        "predictions give 22.600/6.360 on 50000",
        "says REPRODUCED but its errors 22.37/6.36 are more than 0.1 pp from the published 22.37/6.36"]
    assert checked(write_record(tmp_path / "runs", weights, stem="edge", top1_err=22.47)).problems == []


def test_against_the_registry(weights, tmp_path):
    runs = tmp_path / "runs"
    assert checked(write_record(runs, weights, stem="a", model="se_resnet9")).problems == [
        "is for unknown model 'se_resnet9'"]
    assert checked(_relabel(write_record(runs, weights, stem="b"), 256)).problems == ["uses img_size 256, not an evaluation setting of SE-ResNet-50 (224)"]
    assert checked(_relabel(write_record(runs, weights, stem="c"), "224")).problems == [
        "uses img_size None, not an evaluation setting of SE-ResNet-50 (224)"]
    w154 = tiny_folder(tmp_path / "w154", name="senet154")
    assert checked(_relabel(write_record(runs, w154, stem="d"), 300)).problems == [
        "uses img_size 300, not an evaluation setting of SENet-154 (224, 320)"]


def _relabel(path, img_size):
    data = json.loads(path.read_text())
    data["img_size"] = img_size
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("tolerance, problem", [
    (0.1 + 5e-10, None),
    (0.1000001, "uses tolerance 0.1000001 pp, wider than the registry's 0.1"),
    (0.5, "uses tolerance 0.5 pp, wider than the registry's 0.1"),
])
def test_no_wider_tolerance_than_the_registry(weights, tmp_path, tolerance, problem):
    problems = checked(write_record(tmp_path / "runs", weights, tolerance=tolerance)).problems
    assert problems == ([] if problem is None else [problem])


def test_published_numbers_must_be_the_registry_s(weights, tmp_path):
    runs = tmp_path / "runs"
    near = {"top1_err": 22.37 + 5e-7, "top5_err": 6.36 - 5e-7, "source": "copied"}
    c = checked(write_record(runs, weights, stem="near", published=near, top1_err=22.37, top5_err=6.36))
    assert (c.problems, c.comparison, c.published_label) == ([], "release", RELEASE)
    off = {"top1_err": 22.37, "top5_err": 6.36 + 2e-6}
    c = checked(write_record(runs, weights, stem="off", published=off, top1_err=22.37, top5_err=6.36))
    assert c.problems == [f"compares against 22.37/{6.36 + 2e-6} (no source), not the registry's published "
                          "numbers (22.37/6.36)"] and c.comparison == ""
    paper = {"top1_err": 23.29, "top5_err": 6.62, "source": "paper, Table 2"}
    assert checked(write_record(runs, weights, stem="paper", published=paper)).problems == [
        "compares against 23.29/6.62 (paper, Table 2), not the registry's published numbers (22.37/6.36)"]
    w154 = tiny_folder(tmp_path / "w154", name="senet154")
    c = checked(write_record(runs, w154, img_size=320))
    assert (c.problems, c.comparison, c.published_label) == ([], "paper", "paper, Table 8 (single crop, 320x320)")


def test_published_numbers_cover_the_whole_validation_set(weights, tmp_path):
    runs = tmp_path / "runs"
    assert checked(write_record(runs, weights, stem="a", n=1000)).problems == [
        "covers 1000 images; the published numbers are for all 50000"]
    assert checked(write_record(runs, weights, stem="b", n=50_000)).problems == []


def test_a_comparison_with_the_reference_runtime(weights, tmp_path):
    ref = {"top1_err": 50.0, "top5_err": 25.0, "source": "Reference Runtime: OpenCV dnn, same images"}
    c = checked(write_record(tmp_path / "runs", weights, n=64, published=ref))
    assert (c.problems, c.comparison, c.published_label) == ([], "reference", ref["source"])
