"""``validate --cache DIR``: the decode cache changes nothing but where the crops come from.

Runs ``senet-zoo validate`` (converted synthetic SE-ResNet-50, the 13 JPEGs of ``test_validation_run.py``,
``--img-size 64``) with and without ``--cache``: identical records (but for the cache section) and
identical ``.npz`` files; a second run reads the crops instead of decoding them, which a subprocess proves by
counting the image files Python opens (an audit hook: only the few re-decoded for the spot check); a
tampered cache blob, any change of the key, and a corrupt or foreign folder are each handled; torchrun ranks
and forked workers fill one cache, and a killed first run leaves rows that the next run decodes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from senet_zoo import registry
from senet_zoo.validation.cache import CHECK_IMAGES, DecodeCache
from senet_zoo.validation.data import load_eval_set
from senet_zoo.validation.evaluate import KILL_AFTER_STEPS_ENV
from senet_zoo.images.preprocess import Preprocessing, resolve_resize
from test_validation_run import (N_IMAGES, RESIZE, SIZE, common, flat, load, release, run_subprocess,  # noqa: F401
                                 validate)

from conftest import REPO

pytestmark = pytest.mark.slow
RUN_FIELDS = {"created", "wall_time_s", "images_per_s", "command"}
FOLDER = f"caffe-{RESIZE}-{SIZE}"

# Runs the CLI in this process (--workers 0) with an audit hook that records every image file opened.
COUNTING = """
import json, os, sys
root = os.path.realpath(sys.argv[1])
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(args[0]))
        if path.startswith(root + os.sep) and path.endswith(".JPEG"):
            opened.append(os.path.basename(path))
sys.addaudithook(hook)
from senet_zoo import cli
rc = cli.main(sys.argv[2:])
print("OPENED " + json.dumps(sorted(opened)))
sys.exit(rc)
"""


def counted_run(data: Path, argv: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", COUNTING, str(data), "validate", *argv], env=env,
                       capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("OPENED ")][-1]
    return r, json.loads(line[len("OPENED "):])


def assert_same_but_cache(a: Path, b: Path) -> None:
    """Records equal apart from run fields and the cache section; predictions files byte for byte."""
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for r in (ra, rb):
        for k in RUN_FIELDS:
            r.pop(k)
        r["data"].pop("decode_cache")
        r["data"].pop("path")  # a copy of the same images
        r["predictions"].pop("file")
        r["numerics"]["conv_probe"].pop("seconds")
    assert ra == rb
    assert a.with_suffix(".npz").read_bytes() == b.with_suffix(".npz").read_bytes()


def cache_info(record_path: Path) -> dict:
    return json.loads(record_path.read_text())["data"]["decode_cache"]


def current(cache: Path) -> Path:
    """The folder of the one key ``cache/FOLDER`` holds (what its pointer names)."""
    pointers = list((cache / FOLDER).glob("*.current"))
    assert len(pointers) == 1, pointers
    return cache / FOLDER / pointers[0].read_text().strip()


@pytest.fixture
def data(flat, tmp_path) -> Path:
    """A private copy of the 13 JPEGs (tests change their sizes and times)."""
    copy = tmp_path / "ILSVRC2012_img_val"
    shutil.copytree(flat, copy)
    return copy


@pytest.fixture(scope="module")
def uncached(release, flat, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uncached") / "plain.json"
    assert validate(common(release, flat, out, "--save-logits")) == 0
    return out


@pytest.fixture(scope="module")
def built(release, flat, tmp_path_factory) -> Path:
    """A cache folder filled by one run on the 13 images (copies of them have the same key)."""
    root = tmp_path_factory.mktemp("built")
    assert validate(common(release, flat, root / "a.json", "--cache", str(root / "cache"))) == 0
    return root / "cache"


def test_cached_runs_equal_the_uncached_run_and_the_second_decodes_nothing(release, data, uncached, tmp_path):
    cache = tmp_path / "cache"
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    r1, opened1 = counted_run(data, common(release, data, first, "--save-logits", "--cache", str(cache)))
    r2, opened2 = counted_run(data, common(release, data, second, "--save-logits", "--cache", str(cache)))
    c1, c2 = cache_info(first), cache_info(second)
    assert not c1["reused"] and c1["stored_at_start"] == 0 and c1["decoded"] == N_IMAGES
    assert sorted(set(opened1)) == sorted(p.name for p in data.iterdir())  # every image decoded once
    assert c2["reused"] and c2["stored_at_start"] == N_IMAGES and c2["decoded"] == 0
    # the second run opened only the images it re-decoded to check the cache, and those once each
    names = sorted(p.name for p in data.iterdir())
    assert len(c2["checked_images"]) == CHECK_IMAGES
    assert opened2 == [names[i] for i in c2["checked_images"]]
    assert f"{N_IMAGES} of {N_IMAGES} images stored, {CHECK_IMAGES} re-decoded and equal" in r2.stdout
    assert c1["folder"] == c2["folder"] == str(current(cache).resolve())
    assert Path(c1["folder"]).parent == (cache / FOLDER).resolve()
    assert_same_but_cache(uncached, first)
    assert_same_but_cache(uncached, second)
    assert "--cache" in json.loads(second.read_text())["command"]


def test_a_tampered_cache_blob_is_caught_and_rebuilt(release, data, uncached, built, tmp_path, capsys):
    cache = shutil.copytree(built, tmp_path / "cache")
    images = np.load(current(cache) / "images.npy", mmap_mode="r+")
    images[:] ^= 1  # every stored crop off by one in the lowest bit: whichever rows are checked, they differ
    images.flush()
    del images
    capsys.readouterr()
    out = tmp_path / "b.json"
    assert validate(common(release, data, out, "--save-logits", "--cache", str(cache))) == 0
    assert "stored crops differ from a fresh decode; rebuilding it" in capsys.readouterr().out
    info = cache_info(out)
    assert not info["reused"] and info["decoded"] == N_IMAGES
    assert_same_but_cache(uncached, out)


def _rebuilt(release, data, cache, out, capsys, *extra) -> tuple[dict, str]:
    capsys.readouterr()
    assert validate(common(release, data, out, "--cache", str(cache), *extra)) == 0
    return cache_info(out), capsys.readouterr().out


def test_any_key_change_gets_a_new_folder_and_other_preprocessing_its_own(release, data, built, tmp_path, capsys):
    cache = shutil.copytree(built, tmp_path / "cache")
    first = current(cache)
    key_file = first / "key.json"  # a folder written by another OpenCV
    key = json.loads(key_file.read_text())
    assert key["decoder"].startswith("opencv ")
    key_file.write_text(json.dumps({**key, "decoder": "opencv 0.0.1"}))
    info, log = _rebuilt(release, data, cache, tmp_path / "0.json", capsys)
    assert not info["reused"] and info["decoded"] == N_IMAGES
    assert "key.json missing or not this folder's key; rebuilding it" in log
    assert f"removed {first.name}, the crops of other decoder" in log  # nobody holds it any more
    assert json.loads((current(cache) / "key.json").read_text()) == key and not first.exists()

    victim = data / sorted(p.name for p in data.iterdir())[4]
    st = victim.stat()  # a new modification time, same bytes
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    info, log = _rebuilt(release, data, cache, tmp_path / "1.json", capsys)
    assert not info["reused"] and info["decoded"] == N_IMAGES and "the crops of other identity_sha256\n" in log

    mtime = victim.stat().st_mtime_ns  # a new size (bytes after the end of the JPEG: same pixels), same time
    with open(victim, "ab") as f:
        f.write(b"\0" * 7)
    os.utime(victim, ns=(mtime, mtime))
    info, log = _rebuilt(release, data, cache, tmp_path / "2.json", capsys)
    assert not info["reused"] and "the crops of other identity_sha256\n" in log

    info, log = _rebuilt(release, data, cache, tmp_path / "3.json", capsys, "--limit", "7")  # other file list
    assert not info["reused"] and info["key"]["num_images"] == 7
    assert "the crops of other identity_sha256, num_images\n" in log

    # another preprocessing or crop: a folder of its own, the first one left as it was
    info, _ = _rebuilt(release, data, cache, tmp_path / "4.json", capsys, "--limit", "7", "--preprocess", "pil")
    assert Path(info["folder"]).parent.name == f"pil-{RESIZE}-{SIZE}" and not info["reused"]
    info, _ = _rebuilt(release, data, cache, tmp_path / "5.json", capsys, "--limit", "7", "--img-size", "56")
    assert Path(info["folder"]).parent.name == "caffe-64-56" and not info["reused"]
    info, log = _rebuilt(release, data, cache, tmp_path / "6.json", capsys, "--limit", "7")
    assert info["reused"] and Path(info["folder"]).parent.name == FOLDER
    assert "rebuilding" not in log and "removed" not in log
    assert sorted(p.name for p in cache.iterdir()) == sorted([FOLDER, f"pil-{RESIZE}-{SIZE}", "caffe-64-56"])
    # between runs, one folder of crops per preprocessing
    assert [p for p in (cache / FOLDER).iterdir() if p.is_dir()] == [current(cache)]


def test_registry_settings_share_one_folder_at_224_and_senet154_at_320_has_its_own(flat, tmp_path):
    """The folders of every registry setting, opened on real images the way ``validate`` resolves them."""
    evalset = load_eval_set(str(flat))
    folders = {}
    for name in registry.names():
        for setting in registry.get(name).eval:
            resize, rule = resolve_resize(setting.resize, setting.img_size, 0.875)
            cache = DecodeCache.open(tmp_path, evalset.reader, Preprocessing("caffe", resize, setting.img_size, rule),
                                     log=lambda *_: None)
            folders[(name, setting.img_size)] = (cache.folder.parent.name, cache.reused)
            cache.close()
    at224 = {f for (_n, size), (f, _) in folders.items() if size == 224}
    assert at224 == {"caffe-256-224"} and folders[("senet154", 320)][0] == "caffe-365-320"
    assert folders[("se_bn_inception", 224)][1] is False  # built by the first model at 224 ...
    assert all(reused for (n, size), (_f, reused) in folders.items() if size == 224 and n != "se_bn_inception")


@pytest.mark.parametrize("damage", ["truncated images", "json list", "wrong shape"])
def test_a_corrupt_cache_folder_is_rebuilt(release, data, uncached, built, tmp_path, capsys, damage):
    cache = shutil.copytree(built, tmp_path / "cache")
    folder = current(cache)
    if damage == "truncated images":
        with open(folder / "images.npy", "r+b") as f:
            f.truncate(1000)
    elif damage == "json list":
        (folder / "key.json").write_text("[1, 2, 3]")
    else:
        np.save(folder / "status.npy", np.ones(N_IMAGES + 1, np.int8))
    out = tmp_path / "b.json"
    capsys.readouterr()
    assert validate(common(release, data, out, "--save-logits", "--cache", str(cache))) == 0
    log = capsys.readouterr().out
    if damage in ("truncated images", "wrong shape"):
        assert "images.npy or status.npy unreadable or of the wrong shape; rebuilding it" in log
    info = cache_info(out)
    assert not info["reused"] and info["decoded"] == N_IMAGES
    assert_same_but_cache(uncached, out)


def test_a_cache_path_that_is_a_file_is_one_line_exit_2(release, data, tmp_path, capsys):
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file\n")
    out = tmp_path / "x.json"
    capsys.readouterr()
    assert validate(common(release, data, out, "--cache", str(not_a_dir))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the decode cache" in err[0] and str(not_a_dir) in err[0], err
    assert not out.exists() and not out.with_suffix(".npz").exists()


def test_torchrun_ranks_and_forked_workers_fill_and_read_one_cache(release, data, uncached, tmp_path):
    """Two torchrun ranks, each with a DataLoader worker, fill the cache (rank 0 builds it, rank 1 maps it);
    a single process with two workers then reads it: the same predictions as without a cache."""
    cache = tmp_path / "cache"
    first, second = tmp_path / "ranks.json", tmp_path / "workers.json"
    r = run_subprocess(common(release, data, first, "--workers", "1", "--cache", str(cache)), torchrun=2)
    assert r.returncode == 0, r.stderr[-3000:]
    status = np.load(current(cache) / "status.npy")
    assert (status == 1).all()  # every row written, by whichever rank and worker decoded it
    r = run_subprocess(common(release, data, second, "--workers", "2", "--cache", str(cache)))
    assert r.returncode == 0, r.stderr[-3000:]
    info = cache_info(second)
    assert info["reused"] and info["stored_at_start"] == N_IMAGES and info["decoded"] == 0
    (rb, pb) = load(uncached)
    for path in (first, second):
        rec, pred = load(path)
        for key in ("names", "labels", "top5"):
            np.testing.assert_array_equal(pred[key], pb[key])
        assert rec["results"] == rb["results"]


def test_a_killed_first_run_leaves_a_partial_cache_that_the_next_completes(release, data, uncached, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "k.json"
    argv = common(release, data, out, "--save-logits", "--cache", str(cache))
    killed = run_subprocess(argv, {KILL_AFTER_STEPS_ENV: "2"})
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL after 2 batches of 3
    status = np.load(current(cache) / "status.npy")
    stored = int((status == 1).sum())  # the 2 batches evaluated, and the next one the loop had prefetched
    assert 6 <= stored < N_IMAGES and (status[:stored] == 1).all() and (status[stored:] == -1).all()
    r = run_subprocess(argv + ["--resume"])
    assert r.returncode == 0, r.stderr[-2000:]
    info = cache_info(out)
    assert info["reused"] and info["stored_at_start"] == stored and info["decoded"] == N_IMAGES - stored
    assert all(i < stored for i in info["checked_images"])  # only stored rows are checked
    assert (np.load(current(cache) / "status.npy") == 1).all()
    rec, pred = load(out)
    rb, pb = load(uncached)
    for key in ("names", "labels", "top5", "logits"):
        np.testing.assert_array_equal(pred[key], pb[key])
    assert rec["results"] == rb["results"]
