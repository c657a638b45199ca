"""``senet-zoo list`` and ``senet-zoo report``."""
from __future__ import annotations

import json

import pytest

from support.hub_fixtures import run_cli, tiny_folder, write_record


@pytest.fixture
def workspace(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    r50 = tiny_folder(out / "se_resnet50")
    write_record(runs, r50, top1_err=22.40, top5_err=6.34)
    s154 = tiny_folder(out / "senet154", name="senet154")
    write_record(runs, s154, top1_err=18.90, top5_err=4.47)                     # not reproduced
    write_record(runs, s154, img_size=320, top1_err=17.30, top5_err=3.80)
    write_record(runs, tiny_folder(tmp_path / "elsewhere" / "se_resnet101", name="se_resnet101"))
    stale = write_record(runs, tiny_folder(tmp_path / "gone", name="se_resnext50_32x4d"))
    (runs / json.loads(stale.read_text())["predictions"]["file"]).unlink()     # evidence lost
    tiny_folder(out / "se_resnet152", name="se_resnet152")                      # converted, not validated
    write_record(runs, tiny_folder(tmp_path / "older" / "se_resnet152", name="se_resnet152", seed=3))
    return tmp_path


def test_list_shows_where_each_model_stands(workspace, capfd):
    rc, out, err = run_cli(["list", "--weights-root", workspace / "out", "--records", workspace / "runs"], capfd)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("MODEL") and len(lines) == 8
    row = {line.split()[0]: line for line in lines[1:]}
    assert "0660aa2b867f…" in row["se_bn_inception"] and row["se_bn_inception"].split()[2] == "no"
    assert "unknown" in row["senet154"]                       # no trusted release hash
    assert "224: 22.40/6.34 vs 22.37/6.36 REPRODUCED" in row["se_resnet50"]
    assert "224: 18.90/4.47 vs 18.68/4.47 NOT REPRODUCED; 320: 17.30/3.80 vs 17.28/3.79 REPRODUCED" in row["senet154"]
    assert "(weights not here)" in row["se_resnet101"]
    assert "stale (records of other weights)" in row["se_resnet152"]
    assert row["se_resnext50_32x4d"].split()[2] == "no" and "REPRODUCED" not in row["se_resnext50_32x4d"]
    assert all(line.rstrip().endswith("–") for line in lines[1:])  # nothing published yet


def test_report_writes_markdown_and_chart(workspace, capfd):
    md = workspace / "docs" / "results.md"
    rc, out, err = run_cli(["report", "--output", md, "--records", workspace / "runs"], capfd)
    assert rc == 0, err
    text = md.read_text()
    png = md.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "![Published against reproduced errors](results.png)" in text
    for needle in ("| SE-ResNet-50 (224) | 22.37 / 6.36 | 23.29 / 6.62 | **22.40 / 6.34**",
                   "| SENet-154 (320) | 17.28 / 3.79 | 17.28 / 3.79 | **17.30 / 3.80**",
                   "NOT REPRODUCED", "## Records left out", "se_resnext50_32x4d-224.json`: is stale"):
        assert needle in text, needle
    assert text.index("SE-ResNet-50 (224)") < text.index("SENet-154 (224)")  # registry order


def test_report_without_chart(workspace, capfd):
    md = workspace / "r.md"
    rc, out, err = run_cli(["report", "--output", md, "--records", workspace / "runs", "--no-chart"], capfd)
    assert rc == 0 and md.is_file() and not md.with_suffix(".png").exists()


def test_a_named_records_folder_that_does_not_exist_is_an_error(tmp_path, capfd):
    rc, out, err = run_cli(["list", "--records", tmp_path / "nope"], capfd)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no such folder of validation records" in err


def test_report_and_list_put_timms_port_beside_this_conversion_not_in_its_place(workspace, capfd):
    runs = workspace / "runs"
    port = {"origin": "timm", "timm_weights": "timm/legacy_seresnet50.in1k@" + "c" * 40,
            "normalisation_from": "timm's legacy_se* pretrained_cfg"}
    write_record(runs, tiny_folder(workspace / "timm" / "se_resnet50"), top1_err=22.55, top5_err=6.40,
                 stem="se_resnet50-224-timm", weights_sha256="c" * 64, weights=port,
                 created="2030-01-01T00:00:00+00:00")               # newer than ours: must not replace it
    md = workspace / "r.md"
    rc, out, err = run_cli(["report", "--output", md, "--records", runs, "--no-chart"], capfd)
    assert rc == 0, err
    text = md.read_text()
    assert "| SE-ResNet-50 (224) | 22.37 / 6.36 | 23.29 / 6.62 | **22.40 / 6.34**" in text
    assert "| SE-ResNet-50 (224, timm's port) | 22.37 / 6.36 | 23.29 / 6.62 | **22.55 / 6.40**" in text
    assert "## The release, this conversion and timm's port" in text
    assert ("| SE-ResNet-50 (224) | 22.37 / 6.36 | 22.40 / 6.34 | **22.55 / 6.40** | +0.15 / +0.06 | "
            "`se_resnet50-224.json`, `se_resnet50-224-timm.json` |") in text
    rc, out, err = run_cli(["list", "--weights-root", workspace / "out", "--records", runs], capfd)
    row = next(line for line in out.splitlines() if line.startswith("se_resnet50 "))
    assert "224: 22.40/6.34 vs 22.37/6.36 REPRODUCED" in row and "22.55" not in row
