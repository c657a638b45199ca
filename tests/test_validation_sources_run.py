"""Same numbers, to the image: ``senet-zoo validate`` on a tar, WebDataset shards and parquet files written from
the folder's JPEGs gives the folder's record byte for byte apart from the source fields, and the same
predictions file, with ``--limit``, ``--skip-bad-images``, ``--resume`` after a kill and under ``torchrun``.
Fixtures (converted synthetic SE-ResNet-50, 13 JPEGs, labels) come from ``test_validation_run.py``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from senet_zoo import classes
from senet_zoo.validation.evaluate import KILL_AFTER_STEPS_ENV
from senet_zoo.validation.sources.pack import write_parquet, write_shards, write_tar
from test_validation_run import (N_IMAGES, common, flat, independent, labels_file, load, release,  # noqa: F401
                                 run_subprocess, val_name, validate)

pytestmark = pytest.mark.slow
# what names the source (and what differs between any two runs); everything else must be equal
SOURCE_FIELDS = {"path", "source", "source_uri", "member_list_sha256", "label_source", "notes"}
RUN_FIELDS = {"created", "wall_time_s", "images_per_s", "command"}
CORRUPT = b"\xff\xd8\xff\xe0" + np.random.default_rng(15).bytes(3000)


def _forms(folder: Path, labels: dict[str, int], dest: Path) -> dict[str, str]:
    names = sorted(p.name for p in folder.iterdir())
    order = names[5:] + names[:5]  # shards and files not in name order
    return {
        "tar": str(write_tar(folder, names, dest / "ILSVRC2012_img_val.tar")),
        "wds": str(write_shards(folder, order, [labels[n] for n in order], dest / "wds", shards=3)[0].parent),
        "parquet": str(write_parquet(folder, order, [labels[n] for n in order], dest / "pq", files=2,
                                     row_group_size=4)[0].parent),
    }


@pytest.fixture(scope="module")
def label_map(labels_file):
    wnid = {w: i for i, w in enumerate(classes.sorted_wnids())}
    return {n: wnid[w] for n, w in (line.split() for line in labels_file[0].read_text().splitlines())}


@pytest.fixture(scope="module")
def forms(flat, label_map, tmp_path_factory):
    return _forms(flat, label_map, tmp_path_factory.mktemp("forms"))


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _args(release, data, out, kind, labels_file, *extra):
    labels = ["--labels", str(labels_file[0]), "--label-format", "wnid"] if kind in ("folder", "tar") else []
    return common(release, data, out, *labels, *extra)


def assert_same_record(a: Path, b: Path) -> None:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for r in (ra, rb):
        for k in RUN_FIELDS:
            r.pop(k)
        for k in SOURCE_FIELDS:
            r["data"].pop(k)
        r["predictions"].pop("file")
        r["numerics"]["conv_probe"].pop("seconds")  # how long the probe took, not what it found
    assert ra == rb
    assert a.with_suffix(".npz").read_bytes() == b.with_suffix(".npz").read_bytes()


def test_every_source_gives_the_folders_record(release, flat, forms, labels_file, tmp_path):
    runs = {}
    for kind, data in {"folder": str(flat), **forms}.items():
        runs[kind] = tmp_path / f"{kind}.json"
        assert validate(_args(release, data, runs[kind], kind, labels_file, "--save-logits")) == 0, kind
    for kind in forms:
        assert_same_record(runs["folder"], runs[kind])
        record = json.loads(runs[kind].read_text())
        assert record["data"]["source"] == kind and len(record["data"]["member_list_sha256"]) == 64
    shas = {json.loads(p.read_text())["data"]["member_list_sha256"] for p in runs.values()}
    assert len(shas) == 4
    assert json.loads(runs["folder"].read_text())["data"]["source"] == "folder"
    # --limit: the same subset from every form
    for kind, data in {"folder": str(flat), "parquet": forms["parquet"]}.items():
        assert validate(_args(release, data, tmp_path / f"l-{kind}.json", kind, labels_file, "--limit", "5")) == 0
    assert_same_record(tmp_path / "l-folder.json", tmp_path / "l-parquet.json")


def test_a_bad_member_fails_in_one_line_or_is_skipped_the_same_way_everywhere(release, flat, label_map, tmp_path):
    folder = tmp_path / "ILSVRC2012_img_val"
    shutil.copytree(flat, folder)
    bad = val_name(N_IMAGES + 1)
    (folder / bad).write_bytes(CORRUPT)
    labels = {**label_map, bad: 7}
    labels_file = (tmp_path / "labels.txt",)
    labels_file[0].write_text("".join(f"{n} {classes.sorted_wnids()[v]}\n" for n, v in labels.items()))
    forms = _forms(folder, labels, tmp_path / "forms")
    runs = {}
    for kind, data in {"folder": str(folder), **forms}.items():
        out = tmp_path / f"{kind}.json"
        r = run_subprocess(_args(release, data, out, kind, labels_file, "--workers", "2"))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (kind, r.stderr[-2000:])
        assert f"1 unreadable or corrupt image: {bad}" in lines[0] and "--skip-bad-images" in lines[0]
        assert not out.exists() and not out.with_suffix(".npz").exists()
        runs[kind] = tmp_path / f"skip-{kind}.json"
        assert validate(_args(release, data, runs[kind], kind, labels_file, "--skip-bad-images")) == 0
        assert json.loads(runs[kind].read_text())["results"]["bad_images"] == [bad]
    for kind in forms:
        assert_same_record(runs["folder"], runs[kind])


def test_resume_after_a_kill_and_torchrun_read_each_image_once(release, flat, forms, labels_file, tmp_path):
    base = tmp_path / "base.json"
    assert validate(_args(release, str(flat), base, "folder", labels_file)) == 0
    out = tmp_path / "tar.json"
    argv = _args(release, forms["tar"], out, "tar", labels_file)
    killed = run_subprocess(argv, {KILL_AFTER_STEPS_ENV: "2"})
    assert killed.returncode == -9 and not out.exists(), killed.stderr[-2000:]
    assert validate(argv + ["--resume"]) == 0
    record = json.loads(out.read_text())
    assert record["run"]["resumed_from_image"] == 6
    record["run"]["resumed_from_image"] = 0
    out.write_text(json.dumps(record))
    assert_same_record(base, out)
    dist = tmp_path / "wds-dist.json"
    r = run_subprocess(_args(release, forms["wds"], dist, "wds", labels_file), torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    (rd, pd), (rb, pb) = load(dist), load(base)
    assert rd["environment"]["world_size"] == 2 and rd["results"]["num_images"] == N_IMAGES == len(pd["names"])
    for key in ("names", "labels", "top5"):
        np.testing.assert_array_equal(pd[key], pb[key])
    assert rd["results"] == rb["results"] and rd["data"]["source"] == "wds"


# ------------------------------------------------------------------------------------- the Hub's names and files

def _hub_named(folder: Path, labels: dict[str, int], dest: Path) -> dict[str, str]:
    """{Hub name: name} of the folder's images copied as ILSVRC/imagenet-1k names them
    (ILSVRC2012_val_00000001_n01751748.JPEG)."""
    dest.mkdir(parents=True)
    names = {f"{n[:-5]}_{classes.sorted_wnids()[labels[n]]}.JPEG": n for n in sorted(labels)}
    for hub, n in names.items():
        shutil.copy(folder / n, dest / hub)
    return names


def test_hub_names_give_the_folders_record_and_predictions(release, flat, label_map, labels_file, tmp_path):
    hub = tmp_path / "hub"
    canonical = _hub_named(flat, label_map, hub)
    names = list(canonical)
    order = names[5:] + names[:5]
    forms = {"tar": str(write_tar(hub, names, tmp_path / "hub.tar")),
             "parquet": str(write_parquet(hub, order, [label_map[canonical[h]] for h in order], tmp_path / "pq",
                                          row_group_size=4)[0].parent)}
    for extra in ([], ["--limit", "5", "--real-labels"]):
        tag = "-".join(extra).replace("-", "")
        base = tmp_path / f"folder{tag}.json"
        assert validate(_args(release, str(flat), base, "folder", labels_file, *extra)) == 0
        for kind, data in forms.items() if not extra else [("parquet", forms["parquet"])]:
            out = tmp_path / f"hub-{kind}{tag}.json"
            assert validate(_args(release, data, out, kind, labels_file, *extra)) == 0, kind
            assert_same_record(base, out)   # names, subset, ReaL, keys: the folder's, byte for byte
    record, pred = load(tmp_path / "hub-parquetlimit5reallabels.json")
    assert record["results"]["real"]["num_images"] + record["results"]["real"]["num_without_real_labels"] == 5
    assert all(str(n).endswith(".JPEG") and "_n" not in str(n) for n in pred["names"])


@pytest.fixture
def hub_wds(flat, label_map, tmp_path, monkeypatch):
    """timm/imagenet-1k-wds's layout on the local Hub: validation shards at the repo root, beside train ones."""
    from support.hub_client import serving_dataset

    names = sorted(label_map)
    order = names[5:] + names[:5]
    shards = write_shards(flat, order, [label_map[n] for n in order], tmp_path / "wds", shards=3)
    files = {f"imagenet1k-validation-{i:02d}.tar": p.read_bytes() for i, p in enumerate(shards)}
    files["imagenet1k-train-0000.tar"] = shards[0].read_bytes()
    with serving_dataset(monkeypatch, tmp_path / "hf-cache", "timm/imagenet-1k-wds", files) as (hub, sha):
        yield hub, sha


def test_hf_webdataset_gives_the_folders_numbers_online_and_offline(release, flat, labels_file, hub_wds, tmp_path,
                                                                     monkeypatch, capsys):
    from huggingface_hub import constants

    hub, sha = hub_wds
    base = tmp_path / "folder.json"
    assert validate(_args(release, str(flat), base, "folder", labels_file)) == 0
    online = tmp_path / "hf-wds.json"
    capsys.readouterr()
    assert validate(_args(release, "hf://datasets/timm/imagenet-1k-wds", online, "wds", labels_file)) == 0
    assert (f"data: 3 file(s) of hf://datasets/timm/imagenet-1k-wds@{sha} verified against the sha256 the Hub "
            "reports") in capsys.readouterr().out
    assert_same_record(base, online)
    record = json.loads(online.read_text())
    assert record["data"]["source"] == "wds"
    assert record["data"]["source_uri"] == f"hf://datasets/timm/imagenet-1k-wds@{sha}"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = tmp_path / "hf-wds-offline.json"
    assert validate(_args(release, "hf://datasets/timm/imagenet-1k-wds", offline, "wds", labels_file)) == 0
    assert_same_record(base, offline)
    assert json.loads(offline.read_text())["data"]["source_uri"] == record["data"]["source_uri"]
