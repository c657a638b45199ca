"""Outcome, numbers, wall time and peak memory of ``validate`` on each hostile data class of issue 14, for this
tree and another, with the same files in the same run.

    .venv/bin/python benchmarks/hostile_data.py [--before TREE] [--only TEXT] [--timeout 60] [--memory-gb 8]

Each case builds its data in a scratch folder (``CASES``: name -> builder) and says what a correct reading
gives (``expect``): ``"refused"`` (exit 2, no record), a (top-1, top-5) pair in %, or the argv of the
reference reading (typically ``--data`` on the folder that extracting the archive gives), which this tree runs
once to get the pair. Every tree runs the real
command, ``python -m senet_zoo.validation ARGS`` on the CPU (``PYTHONPATH=TREE``), in a fresh process under a
wall-clock timeout and an ``RLIMIT_AS`` cap; peak RSS is the kernel's ``ru_maxrss`` of that child
(``os.wait4``), known even when it is killed. The weights are a converted synthetic SE-ResNet-50 (seeded,
calibrated so its predictions are not constant), built once by this tree. ``--before``: a checkout of the
code before the fix, e.g. ``git worktree add --detach ../wt-before acd60bb``.

A case is ``Case(name, build)`` where ``build(folder, weights) -> (argv, expect)``; ``argv`` excludes
``--model/--weights/--output/--device``, which the harness adds. A builder may return a third item,
``prepare(work) -> {VAR: value}``, called before each run in that run's folder: what the run needs of its own
(a fresh copy of a Hub cache) and the environment it is given. A case may also give ``before_run(folder,
run)``, called for each tree just before its measured run, where ``run(argv)`` runs that tree's validate in the
same work folder (the same HOME, so the same tar index): state the measured run then meets, e.g. a tree's own
index of a tar that is then replaced. A case whose measurement is not one command (two runs at once, a mount
around the run) gives ``run(tree, argv, weights, work, timeout, memory, env) -> result`` in place of the
harness's own. Add a class: write a builder, append it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from limited import run_limited

ROOT = Path(__file__).resolve().parents[1]
SIZE, RESIZE = 64, 73   # small crops: the classes are about reading the data, not the model


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], tuple[list[str], object]]
    before_run: Callable[[Path, Callable[[list[str]], dict]], None] | None = None
    run: Callable | None = None  # run(tree, argv, weights, work, timeout, memory, env) -> result, when not one command


def make_weights(folder: Path) -> Path:
    """A converted seeded SE-ResNet-50 (the tests' stand-in), by this tree's code."""
    sys.path.insert(0, str(ROOT))
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.convert import convert
    from senet_zoo.converters.release_layout import write_release_prototxt
    from senet_zoo.converters.synthetic import synthesize

    prototxt, caffemodel, out = folder / "r.prototxt", folder / "r.caffemodel", folder / "weights"
    write_release_prototxt("se_resnet50", prototxt)
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=3), caffemodel)
    convert("se_resnet50", caffemodel, out, prototxt, allow_unknown_hash=True)
    return out


CASES: list[Case] = []   # each data class appends its Case here (see the module docstring)


def run(tree: Path, argv: list[str], weights: Path, work: Path, timeout: float, memory_bytes: int,
        env: dict | None = None) -> dict:
    record = work / f"record-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "senet_zoo.validation", "--model", "se_resnet50", "--weights", str(weights),
           "--device", "cpu", "--img-size", str(SIZE), "--batch-size", "4", "--no-progress",
           "--output", str(record), *argv]

    done = run_limited(cmd, cwd=work, timeout=timeout, memory_bytes=memory_bytes,
                       env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                            "HOME": str(work), "HF_HUB_OFFLINE": "1", **(env or {})})
    lines = [line for line in done.lines if line.strip()]
    result = {"exit": "killed" if done.returncode is None else done.returncode, "wall_s": done.wall_s,
              "peak_rss_mb": done.peak_rss_mb, "numbers": None, "message": lines[-1] if lines else ""}
    if record.is_file():
        r = json.loads(record.read_text())["results"]
        result["numbers"] = (round(r["top1_err"], 2), round(r["top5_err"], 2), r["num_images"])
    return result


def verdict(result: dict, expect) -> str:
    if expect == "refused":
        return "right" if result["exit"] == 2 and result["numbers"] is None else "WRONG"
    if result["numbers"] is None:
        return "WRONG"
    return "right" if tuple(result["numbers"][:2]) == tuple(expect) else "WRONG"


def clip(text: str, n: int = 80) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= n else text[:n - 1] + "…"


# ---- decode cache (issue 14, Must 4): one --cache DIR shared by two runs, full, or read-only
#
# The data: 40 generated JPEGs, labelled with the synthetic model's own top-1 (--expect-agreement), so a right
# reading gives 0.00 top-1 error and any wrong crop shows. Each tree fills its own caches (the layout changed).

N_CACHE = 40


def _jpegs(folder: Path, first: int, count: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(first, first + count):
        h, w = (int(v) for v in rng.integers(48, 200, 2))
        coarse = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        img.save(folder / f"ILSVRC2012_val_{i:08d}.JPEG", "JPEG", quality=90)
    return folder


def _own_labels(datas: list[Path], weights: Path, folder: Path) -> list[str]:
    """argv labelling every image of ``datas`` with the model's own top-1 (this tree's reading, no cache)."""
    import numpy as np
    from senet_zoo import classes

    lines = []
    for data in datas:
        work = folder / f"labels-{data.parent.name}"
        work.mkdir()
        r = run(ROOT, ["--data", str(data), "--expect-agreement", "any"], weights, work, 120, 8 << 30)
        if r["exit"] not in (0, 1):
            raise SystemExit(f"labelling {data} failed: {r['message']}")
        with np.load(next(work.glob("record-*.npz"))) as z:
            lines += [f"{n} {classes.sorted_wnids()[int(t)]}\n" for n, t in zip(z["names"], z["top5"][:, 0])]
    labels = folder / "own-top1.txt"
    labels.write_text("".join(lines))
    return ["--labels", str(labels), "--label-format", "wnid", "--expect-agreement", "its own top-1"]


def _cache_data(folder: Path, weights: Path, second: int = 0) -> tuple[Path, Path | None, list[str]]:
    first = _jpegs(folder / "first" / "ILSVRC2012_img_val", 1, N_CACHE, seed=1)
    other = _jpegs(folder / "second" / "ILSVRC2012_img_val", 101, second, seed=2) if second else None
    return first, other, _own_labels([first] + ([other] if other else []), weights, folder)


def _child_of_this_process(marker: str) -> int | None:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and marker in cmdline:
            return int(pid)
    return None


def _shared(second: int, later: bool = False) -> Case:
    """Run A (40 images) builds its folder in DIR and is stopped (SIGSTOP) right after; run B (other images, as
    many or fewer) runs whole with the same DIR; A then continues. The row is A's outcome (its time includes
    B's run), or with ``later`` that of a run C on B's images reusing DIR afterwards. Before: B rebuilt the
    folder under A, whose worker then wrote A's crops into B's rows (or past their end)."""
    import threading

    def build(folder: Path, weights: Path):
        first, other, labels = _cache_data(folder, weights, second)
        b_argv = ["--data", str(other), "--workers", "1", *labels]
        (folder / "second.argv").write_text(json.dumps(b_argv))
        a_argv = ["--data", str(first), "--workers", "1", *labels]
        return a_argv, (["--data", str(other), *labels] if later else ["--data", str(first), *labels])

    def go(tree, argv, weights, work, timeout, memory, env=None):
        cache = work / "cache"
        b_argv = json.loads((work.parent / "second.argv").read_text()) + ["--cache", str(cache)]
        a_argv = argv + ["--cache", str(cache)]
        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(r=run(tree, a_argv, weights, work, timeout, memory)))
        thread.start()
        base, pid = cache / f"caffe-{RESIZE}-{SIZE}", None
        while thread.is_alive() and pid is None:
            if (base / "key.json").exists() or any(base.glob("*.current")):  # a built folder, either layout
                pid = _child_of_this_process(str(cache))
                if pid:
                    os.killpg(pid, signal.SIGSTOP)
            time.sleep(0.001)
        if pid is None:
            thread.join()
            return {**out["r"], "message": "A finished before it could be stopped: " + out["r"]["message"]}
        (work / "b").mkdir()
        b = run(tree, b_argv, weights, work / "b", timeout, memory)
        os.killpg(pid, signal.SIGCONT)
        thread.join()
        a = out["r"]
        seen = f"[A: exit {a['exit']}, {a['numbers']}; B: exit {b['exit']}, {b['numbers']}]"
        if not later:
            return {**a, "message": f"{seen} {a['message']}"}
        (work / "c").mkdir()
        c = run(tree, b_argv, weights, work / "c", timeout, memory)
        return {**c, "message": f"{seen} {c['message']}"}

    count = "same image count" if second == N_CACHE else f"{second} images"
    who = "a later run on the other data" if later else "the first run"
    return Case(f"decode cache: DIR shared with a run on other data ({count}) while the first runs: {who}",
                build, run=go)


def _mounted(where: Path, size: str, copy: Path | None = None) -> str | None:
    """A tmpfs of ``size`` at ``where`` (root only), with ``copy`` copied in: None when done, else why not."""
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if r.returncode:
        return "no tmpfs: " + (r.stderr.decode().strip() or "mount failed")
    if copy is not None:
        import shutil

        shutil.copytree(copy, where / copy.name)
    return None


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)


def _cache_case(label: str, place) -> Case:
    """One run whose --cache DIR is made by ``place(tree, argv, weights, work, timeout, memory)`` ->
    (DIR, undo, why not)."""
    def build(folder: Path, weights: Path):
        first, _, labels = _cache_data(folder, weights)
        return ["--data", str(first), "--workers", "1", *labels], ["--data", str(first), *labels]

    def go(tree, argv, weights, work, timeout, memory, env=None):
        cache, undo, why_not = place(tree, argv, weights, work, timeout, memory)
        try:
            if why_not:
                return {"exit": "n/a", "wall_s": 0.0, "peak_rss_mb": 0.0, "numbers": None, "message": why_not}
            return run(tree, argv + ["--cache", str(cache)], weights, work, timeout, memory)
        finally:
            undo()

    return Case(f"decode cache: {label}", build, run=go)


def _full_tmpfs(tree, argv, weights, work, timeout, memory):
    """A 64 KB tmpfs: the 40 crops take 480 KB. Before: a worker's write into the sparse file hit SIGBUS."""
    why = _mounted(work / "small", "64k")
    return work / "small" / "cache", (lambda: None) if why else (lambda: _unmount(work / "small")), why


def _file_size_limit(tree, argv, weights, work, timeout, memory):
    """RLIMIT_FSIZE 200 KB for the run (inherited from this process while it runs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    return work / "cache", lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard)), None


def _read_only(filled: bool):
    def place(tree, argv, weights, work, timeout, memory):
        where = work / "ro"
        if filled:  # filled by this tree, then copied onto a tmpfs remounted read-only
            fill = work / "fill"
            fill.mkdir()
            r = run(tree, argv + ["--cache", str(fill / "cache")], weights, fill, timeout, memory)
            if r["exit"] != 0:
                return None, lambda: None, f"filling the cache failed: {r['message']}"
        why = _mounted(where, "16m", (work / "fill" / "cache") if filled else None)
        if why:
            return None, lambda: None, why
        r = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True)
        if r.returncode:
            _unmount(where)
            return None, lambda: None, "cannot remount read-only: " + r.stderr.decode().strip()
        return where / "cache", lambda: _unmount(where), None
    return place


CASES += [
    _shared(N_CACHE),
    _shared(N_CACHE, later=True),
    _shared(N_CACHE // 2),
    _cache_case("disk full while filling (64 KB tmpfs)", _full_tmpfs),
    _cache_case("file size limit while filling (RLIMIT_FSIZE 200 KB)", _file_size_limit),
    _cache_case("read-only location, no cache there", _read_only(False)),
    _cache_case("read-only location, a filled cache there", _read_only(True)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the code before the fix (e.g. at acd60bb)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run (default 60)")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="RLIMIT_AS of each run (default 8)")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT")
    args = parser.parse_args()
    trees = [("now", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    memory = int(args.memory_gb * (1 << 30))
    cases = [c for c in CASES if args.only is None or args.only in c.name]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = make_weights(tmp)
        print("| case | expected | " + " | ".join(f"{t}: exit | {t}: top-1/top-5 (N) | {t}: right? | {t}: s | "
                                                  f"{t}: peak MiB | {t}: last line" for t, _ in trees) + " |")
        print("|" + "---|" * (2 + 6 * len(trees)))
        for i, case in enumerate(cases):
            folder = tmp / f"case{i}"
            folder.mkdir()
            argv, expect, *rest = case.build(folder, weights)
            prepare = rest[0] if rest else (lambda work: {})
            if isinstance(expect, list):  # the reference reading, by this tree
                ref_dir = folder / "reference"
                ref_dir.mkdir()
                ref = run(ROOT, expect, weights, ref_dir, args.timeout, memory, prepare(ref_dir))
                if ref["numbers"] is None:
                    raise SystemExit(f"{case.name}: the reference reading failed: {ref['message']}")
                expect = ref["numbers"][:2]
            cells = [case.name, "refused (exit 2)" if expect == "refused" else f"{expect[0]:.2f}/{expect[1]:.2f}"]
            for label, tree in trees:
                work = folder / f"run-{label}"
                work.mkdir()
                if case.before_run is not None:
                    case.before_run(folder, lambda a, t=tree, w=work: run(t, a, weights, w, args.timeout, memory,
                                                                          prepare(w)))
                r = (case.run or run)(tree, argv, weights, work, args.timeout, memory, prepare(work))
                n = r["numbers"]
                cells += [str(r["exit"]), f"{n[0]:.2f}/{n[1]:.2f} ({n[2]})" if n else "-", verdict(r, expect),
                          f"{r['wall_s']:.1f}", f"{r['peak_rss_mb']:.0f}", clip(r["message"])]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nper run: timeout {args.timeout:.0f} s, RLIMIT_AS {args.memory_gb:g} GiB; CPU, --img-size {SIZE}, "
          "batch 4; wall time includes the interpreter start and imports")


# ---- names and Hub data ------------------------------------------------------------------------------------
# Issue 14 Must 3 (the Hub's ILSVRC2012_val_NNNNNNNN_nWNID.JPEG names) and Must 5 (hf:// files verified in the
# cache, offline from it), issue 17 Must 3 (hf://datasets/timm/imagenet-1k-wds). The data is built by this tree's
# pack module; the Hub is the tests' local one (tests/support/hub_server.py), in this process, and its cache is
# filled by huggingface_hub itself, then copied afresh for every run (a run that fetches a file again must not
# mend the next run's cache).

NAMES_N = 40    # under the cross-check's 50 images: labels picked from the stand-in's own guesses pass it
_NAMES: dict = {}


def _names_set(folder: Path, weights: Path) -> tuple[Path, dict[str, int]]:
    """(a folder of NAMES_N JPEGs named ILSVRC2012_val_..., their labels): half the stand-in's top-1 guess, a
    quarter its 4th, a quarter a miss, so that the errors depend on which images are read. Built once."""
    if "set" not in _NAMES:
        import numpy as np
        from PIL import Image

        images = folder / "names-set" / "ILSVRC2012_img_val"
        images.mkdir(parents=True)
        rng = np.random.default_rng(14)
        for i in range(1, NAMES_N + 1):
            h, w = (int(v) for v in rng.integers(60, 140, 2))
            coarse = rng.uniform(0, 255, (4, 4, 3))
            img = np.kron(coarse, np.ones((h // 4 + 1, w // 4 + 1, 1)))[:h, :w] + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(images / f"ILSVRC2012_val_{i:08d}.JPEG")
        work = folder / "names-set" / "guesses"
        work.mkdir()
        r = run(ROOT, ["--data", str(images)], weights, work, 600, 8 << 30)
        if r["numbers"] is None:
            raise SystemExit(f"names: the stand-in's guesses failed: {r['message']}")
        with np.load(next(work.glob("record-*.npz"))) as z:
            names, top5 = [str(n) for n in z["names"]], z["top5"]
        labels = {}
        for n, guesses, pick in zip(names, top5, rng.random(len(names))):
            miss = next(c for c in range(1000) if c not in guesses)
            labels[n] = int(guesses[0] if pick < 0.5 else guesses[3] if pick < 0.75 else miss)
        _NAMES["set"] = images, labels
    return _NAMES["set"]


def _hub_name(name: str, label: int) -> str:
    from senet_zoo import classes

    return f"{name[:-5]}_{classes.sorted_wnids()[label]}.JPEG"


def _hub_parquet(images: Path, labels: dict[str, int], dest: Path, synsets: dict[str, int] | None = None,
                 files: int = 1) -> Path:
    """The images as ILSVRC/imagenet-1k holds them: parquet rows named ILSVRC2012_val_..._nWNID.JPEG (the synset
    of ``synsets[name]``, default the label), in another order than by name; returns the folder."""
    import shutil

    from senet_zoo.validation.sources.pack import write_parquet

    hub = dest / "named"
    hub.mkdir(parents=True)
    names = []
    for n in sorted(labels)[::-1]:
        names.append(_hub_name(n, (synsets or labels)[n]))
        shutil.copy(images / n, hub / names[-1])
    plain = {_hub_name(n, (synsets or labels)[n]): n for n in labels}
    write_parquet(hub, names, [labels[plain[h]] for h in names], dest / "data", files=files, row_group_size=8)
    return dest / "data"


def _folder_reading(images: Path, labels: dict[str, int], folder: Path, *extra: str) -> list[str]:
    """The reference reading: the folder of plain names, labelled by a wnid label file."""
    from senet_zoo import classes

    label_file = folder / "labels.txt"
    label_file.write_text("".join(f"{n} {classes.sorted_wnids()[v]}\n" for n, v in sorted(labels.items())))
    return ["--data", str(images), "--labels", str(label_file), "--label-format", "wnid", *extra]


def names_devkit_column(folder: Path, weights: Path):
    """60 Hub-named rows whose label column is the SENet release's numbering (devkit ID - 1): the cross-check
    must see through the names and refuse it."""
    from senet_zoo import classes
    from senet_zoo.validation.labels import imagenet_classes_labels

    images, _ = _names_set(folder, weights)
    many = folder / "sixty"
    many.mkdir()
    ref, _ = imagenet_classes_labels()
    for i in range(1, 61):
        (many / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(
            (images / f"ILSVRC2012_val_{(i - 1) % NAMES_N + 1:08d}.JPEG").read_bytes())
    truth = {n: ref[n] for n in sorted(p.name for p in many.iterdir())}
    devkit = {n: int(classes.sorted_to_devkit()[v]) for n, v in truth.items()}
    return ["--data", str(_hub_parquet(many, devkit, folder / "pq", synsets=truth))], "refused"


def names_synset_not_label(folder: Path, weights: Path):
    """Hub-named rows, one of which is named for another synset than its label."""
    images, labels = _names_set(folder, weights)
    first = sorted(labels)[0]
    synsets = {**labels, first: (labels[first] + 1) % 1000}
    return ["--data", str(_hub_parquet(images, labels, folder / "pq", synsets=synsets))], "refused"


def names_real_labels(folder: Path, weights: Path):
    images, labels = _names_set(folder, weights)
    return (["--data", str(_hub_parquet(images, labels, folder / "pq")), "--real-labels"],
            _folder_reading(images, labels, folder, "--real-labels"))


def names_limit(folder: Path, weights: Path):
    images, labels = _names_set(folder, weights)
    return (["--data", str(_hub_parquet(images, labels, folder / "pq")), "--limit", "12"],
            _folder_reading(images, labels, folder, "--limit", "12"))


def _hub_repo(folder: Path, repo_id: str, files: dict[str, bytes], swap: str | None = None,
              swap_with: bytes = b"", offline: bool = False):
    """A local Hub serving ``repo_id``, a cache filled from it by huggingface_hub (``swap``: that file's blob
    then overwritten with ``swap_with``), and ``prepare`` giving each run its own copy of that cache."""
    import shutil

    sys.path.insert(0, str(ROOT / "tests"))
    from support.hub_server import FakeHub

    hub = FakeHub().start()   # lives as long as this process: every run of the case talks to it
    hub.add_dataset(repo_id, files, gated=False)
    cache = folder / "hf-cache"
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    if swap is not None or offline:
        fill = ("import sys; from huggingface_hub import snapshot_download; "
                "snapshot_download(sys.argv[1], repo_type='dataset', allow_patterns=sys.argv[2:])")
        subprocess.run([sys.executable, "-c", fill, repo_id, *files], check=True, env={
            **env, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0", "PATH": "/usr/bin:/bin", "HOME": str(folder)})
    if swap is not None:
        blob = (next(cache.glob("datasets--*/snapshots/*")) / swap).resolve()
        blob.chmod(0o644)
        blob.write_bytes(swap_with)

    def prepare(work: Path) -> dict:
        if cache.exists():
            shutil.copytree(cache, work / "hf-cache", symlinks=True)
        return {**env, "HF_HUB_CACHE": str(work / "hf-cache"), "HF_HUB_OFFLINE": "1" if offline else "0"}
    return prepare


def _imagenet_1k(folder: Path, weights: Path, swapped: bool, offline: bool):
    """ILSVRC/imagenet-1k's layout (data/validation-0000N-of-00002.parquet, Hub names); ``swapped``: the first
    file's cached blob holds the same rows with other images (each row given the next row's image)."""
    images, labels = _names_set(folder, weights)
    pq = _hub_parquet(images, labels, folder / "pq", files=2)
    files = {f"data/{p.name}": p.read_bytes() for p in sorted(pq.iterdir())}
    swap = other = None
    if swapped:
        import pyarrow as pa
        import pyarrow.parquet as pq_io

        swap = sorted(files)[0]
        table = pq_io.read_table(pq / Path(swap).name)
        image = table.column("image").combine_chunks()
        shifted = pa.StructArray.from_arrays([pa.array(image.field("bytes").to_pylist()[1:] +
                                                       image.field("bytes").to_pylist()[:1], pa.binary()),
                                              image.field("path")], ["bytes", "path"])
        pq_io.write_table(table.set_column(0, "image", shifted), folder / "swapped.parquet", row_group_size=8)
        other = (folder / "swapped.parquet").read_bytes()
    prepare = _hub_repo(folder, "ILSVRC/imagenet-1k", files, swap, other or b"", offline)
    return ["--data", "hf://datasets/ILSVRC/imagenet-1k"], _folder_reading(images, labels, folder), prepare


def hub_swapped_blob_online(folder: Path, weights: Path):
    return _imagenet_1k(folder, weights, swapped=True, offline=False)


def hub_swapped_blob_offline(folder: Path, weights: Path):
    argv, _, prepare = _imagenet_1k(folder, weights, swapped=True, offline=True)
    return argv, "refused", prepare


def hub_offline_from_the_cache(folder: Path, weights: Path):
    return _imagenet_1k(folder, weights, swapped=False, offline=True)


def hub_timm_wds(folder: Path, weights: Path):
    """timm/imagenet-1k-wds's layout: imagenet1k-validation-NN.tar at the repo root beside train shards."""
    from senet_zoo.validation.sources.pack import write_shards

    images, labels = _names_set(folder, weights)
    names = sorted(labels)[::-1]
    shards = write_shards(images, names, [labels[n] for n in names], folder / "wds", shards=3)
    files = {f"imagenet1k-validation-{i:02d}.tar": p.read_bytes() for i, p in enumerate(shards)}
    files["imagenet1k-train-0000.tar"] = shards[0].read_bytes()
    prepare = _hub_repo(folder, "timm/imagenet-1k-wds", files)
    return ["--data", "hf://datasets/timm/imagenet-1k-wds"], _folder_reading(images, labels, folder), prepare


CASES += [
    Case("names: Hub-named parquet, label column = devkit ID - 1 (60 rows)", names_devkit_column),
    Case("names: Hub-named parquet, a name's synset is not its label", names_synset_not_label),
    Case("names: Hub-named parquet, --real-labels", names_real_labels),
    Case("names: Hub-named parquet, --limit 12", names_limit),
    Case("hf: ILSVRC/imagenet-1k, a swapped blob in the cache, online", hub_swapped_blob_online),
    Case("hf: ILSVRC/imagenet-1k, a swapped blob in the cache, offline", hub_swapped_blob_offline),
    Case("hf: ILSVRC/imagenet-1k, offline from the cache", hub_offline_from_the_cache),
    Case("hf: timm/imagenet-1k-wds validation shards", hub_timm_wds),
]


# ---- archives (tar, WebDataset, parquet) -------------------------------------------------------------------
# Issue 14, Musts 2, 4, 6, 7: what extraction gives is what is read; the kept tar index follows the archive;
# hostile headers, brace patterns and one-row-group parquet within bounds; an index folder that cannot be
# written is no reason to refuse. References: the folder GNU tar extracts, or the same images in a plain form.
# The images are labelled from the model's own predictions with every third one a miss (``_labelled``), so a
# reading that drops, adds or swaps images gives other numbers, not only another count.

import io as _io  # noqa: E402 - the section keeps its imports with it
import shutil as _shutil  # noqa: E402
import subprocess as _subprocess  # noqa: E402
import tarfile as _tarfile  # noqa: E402


def _val_images(folder: Path, n: int, seed: int = 14) -> dict[str, bytes]:
    """{ILSVRC2012 validation name: a small random JPEG}, names 1..n."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(1, n + 1):
        h, w = (int(v) for v in rng.integers(48, 96, 2))
        buf = _io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
        out[f"ILSVRC2012_val_{i:08d}.JPEG"] = buf.getvalue()
    return out


_PREDICTED: dict[bytes, int] = {}


def _predict(weights: Path, images: dict[str, bytes]) -> None:
    """The model's top-1 class of each image (Caffe preprocessing at the harness's size), kept by content: the
    cases label their images with it, so the right images score 0.00 top-1 and any other reading does not."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from senet_zoo.images.preprocess import caffe_rgb
    from senet_zoo.models.factory import create_model

    todo = [b for b in images.values() if b not in _PREDICTED]
    if not todo:
        return
    model = create_model("se_resnet50", pretrained=weights)
    mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
    with torch.inference_mode():
        for jpeg in todo:
            x = torch.from_numpy(np.ascontiguousarray(caffe_rgb(jpeg, RESIZE, SIZE))).permute(2, 0, 1)[None]
            _PREDICTED[jpeg] = int(model(x.float() - mean)[0].argmax())


def _labelled(folder: Path, weights: Path, n: int) -> tuple[dict[str, bytes], dict[str, int]]:
    """n images named as ILSVRC2012 validation images, and their labels: the model's own top-1 class, but for
    every third image the next class (a top-1 miss), so that the errors depend on which images are read."""
    images = _val_images(folder, n)
    _predict(weights, images)
    return images, {name: (_PREDICTED[images[name]] + (i % 3 == 0)) % 1000 for i, name in enumerate(sorted(images))}


def _wnid(label: int) -> str:
    from senet_zoo import classes

    return classes.sorted_wnids()[label]


def _add(tf, name: str, payload: bytes | None = None, type=_tarfile.REGTYPE, link: str = "") -> None:
    ti = _tarfile.TarInfo(name)
    ti.type, ti.linkname, ti.mtime = type, link, 1_500_000_000
    if payload is not None:
        ti.size = len(payload)
    tf.addfile(ti, _io.BytesIO(payload) if payload is not None else None)


def _extract(tar: Path, dest: Path) -> Path:
    dest.mkdir()
    _subprocess.run(["tar", "-xf", str(tar), "-C", str(dest)], capture_output=True)
    return dest


def _tar_links(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    names = sorted(images)
    w = {n: _wnid(labels[n]) for n in names}
    tar = folder / "tree-links.tar"
    with _tarfile.open(tar, "w", format=_tarfile.GNU_FORMAT) as tf:
        for n in names[:8]:
            _add(tf, f"{w[n]}/{n}", images[n])
        for n, target in zip(names[8:10], names[:2]):      # what tar cf writes for a deduplicated tree
            _add(tf, f"{w[target]}/{n}", type=_tarfile.LNKTYPE, link=f"{w[target]}/{target}")
        for n, target in zip(names[10:12], names[2:4]):
            _add(tf, f"{w[target]}/{n}", type=_tarfile.SYMTYPE, link=f"{target}")
    return ["--data", str(tar)], ["--data", str(_extract(tar, folder / "extracted"))]


def _tar_duplicates(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    names = sorted(images)
    tar = folder / "tree-duplicates.tar"
    with _tarfile.open(tar, "w") as tf:
        for n in names[:8]:                               # the first copies: other images
            _add(tf, f"{_wnid(labels[n])}/{n}", images[names[(names.index(n) + 4) % 12]])
        for n in names:                                   # appended again: tar -x keeps the last
            _add(tf, f"{_wnid(labels[n])}/{n}", images[n])
    return ["--data", str(tar)], ["--data", str(_extract(tar, folder / "extracted"))]


def _tar_sparse(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    tree = folder / "tree"
    for n, jpeg in sorted(images.items()):
        path = tree / _wnid(labels[n]) / n
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # an APP15 segment of 64,000 zero bytes, left as a hole: a sparse file
            f.write(jpeg[:2] + b"\xff\xef" + (64_002).to_bytes(2, "big"))
            f.seek(64_000, 1)
            f.write(jpeg[2:])
    tar = folder / "tree-sparse.tar"
    _subprocess.run(["tar", "--format=gnu", "-S", "-cf", str(tar), "-C", str(tree), "."], check=True)
    return ["--data", str(tar)], ["--data", str(tree)]


def _tar_pax(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    tar = folder / "tree-pax.tar"
    with _tarfile.open(tar, "w", format=_tarfile.PAX_FORMAT) as tf:
        for n, jpeg in sorted(images.items()):
            _add(tf, f"{_wnid(labels[n])}/{'é' * 40}-{'d' * 80}/{n}", jpeg)        # pax path records
    return ["--data", str(tar)], ["--data", str(_extract(tar, folder / "extracted"))]


def _tar_negative_size(folder: Path, weights: Path):
    images = _val_images(folder, 4)
    tar = folder / "negative.tar"
    with _tarfile.open(tar, "w", format=_tarfile.GNU_FORMAT) as tf:
        for n, jpeg in sorted(images.items()):
            _add(tf, n, jpeg)
    raw = bytearray(tar.read_bytes())
    second = 512 + (len(images[sorted(images)[0]]) + 511) // 512 * 512
    # -512: the next header is this one again (tarfile reads it for ever, keeping each copy)
    raw[second + 124:second + 136] = b"\xff" + (256 ** 11 - 512).to_bytes(11, "big")
    raw[second + 148:second + 156] = b" " * 8
    raw[second + 148:second + 156] = b"%06o\0 " % sum(raw[second:second + 512])
    tar.write_bytes(bytes(raw))
    return ["--data", str(tar)], "refused"


def _tar_pair(folder: Path, weights: Path) -> tuple[Path, Path]:
    """Two tars of one size, the same images in reverse order: each offset of one holds another image."""
    images, labels = _labelled(folder, weights, 16)
    names = sorted(images)
    out = []
    for tag, order in (("a", names), ("b", names[::-1])):
        path = folder / f"{tag}.tar"
        with _tarfile.open(path, "w") as tf:
            for n in order:
                _add(tf, f"{_wnid(labels[n])}/{n}", images[n])
        out.append(path)
    assert out[0].stat().st_size == out[1].stat().st_size
    return out[0], out[1]


def _copy_p(src: Path, dest: Path, mtime_ns: int) -> None:
    _shutil.copyfile(src, dest)
    os.utime(dest, ns=(mtime_ns, mtime_ns))


def _tar_replaced(folder: Path, weights: Path):
    first, second = _tar_pair(folder, weights)
    data = folder / "val.tar"
    _copy_p(second, data, 1_600_000_000_000_000_000)
    return ["--data", str(data)], ["--data", str(_extract(second, folder / "extracted"))]


def _tar_replaced_prepare(folder: Path, run) -> None:
    """The tree's own index of the first tar, then the second copied over it keeping size and mtime (cp -p)."""
    data = folder / "val.tar"
    _copy_p(folder / "a.tar", data, 1_600_000_000_000_000_000)
    run(["--data", str(data)])
    _copy_p(folder / "b.tar", data, 1_600_000_000_000_000_000)


def _tar_index_blocked(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    tar = folder / "tree.tar"
    with _tarfile.open(tar, "w") as tf:
        for n, jpeg in sorted(images.items()):
            _add(tf, f"{_wnid(labels[n])}/{n}", jpeg)
    cache = folder / "cache"
    cache.mkdir()
    (cache / "tar-index").write_text("a file where the index folder would go\n")   # root ignores chmod
    return ["--data", str(tar), "--cache", str(cache)], ["--data", str(_extract(tar, folder / "extracted"))]


def _shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with _tarfile.open(path, "w") as tf:
        for name, payload in members:
            _add(tf, name, payload)
    return path


def _samples(images: dict[str, bytes], labels: dict[str, int], key=lambda stem: stem, ext="jpg", cls=None,
             json_name=False):
    out = []
    for n, jpeg in sorted(images.items()):
        stem = n.rsplit(".", 1)[0]
        out += [(f"{key(stem)}.{ext}", jpeg), (f"{key(stem)}.{'v2.' if ext.startswith('v2') else ''}cls",
                                                 (cls or {}).get(n, str(labels[n])).encode())]
        if json_name:
            out.append((f"{key(stem)}.json", f'{{"filename": "{n}"}}'.encode()))
    return out


def _wds_cls(text: str):
    def build(folder: Path, weights: Path):
        images, labels = _labelled(folder, weights, 12)
        first = sorted(images)[0]
        return ["--data", str(_shard(folder / "s.tar", _samples(images, labels, cls={first: text})))], "refused"
    return build


def _wds_deep_json(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    members = _samples(images, labels)
    members.insert(2, (members[0][0].rsplit(".", 1)[0] + ".json", b"[" * 100_000 + b"]" * 100_000))
    return ["--data", str(_shard(folder / "s.tar", members))], "refused"


def _wds_dotted_keys(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    dotted = _shard(folder / "dotted.tar", _samples(images, labels, ext="v2.jpg"))   # key KEY, fields v2.jpg, v2.cls
    plain = _shard(folder / "plain.tar", _samples(images, labels))
    return ["--data", str(dotted)], ["--data", str(plain)]


def _wds_duplicated_key(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 12)
    names = sorted(images)
    members = _samples(images, labels)
    stem = names[0].rsplit(".", 1)[0]   # the first key again, at the end, with another image
    members += [(f"{stem}.jpg", images[names[5]]), (f"{stem}.cls", str(labels[names[5]]).encode())]
    return ["--data", str(_shard(folder / "s.tar", members))], "refused"


def _wds_json_filename(folder: Path, weights: Path):
    images, labels = _labelled(folder, weights, 40)   # under 50: labels the model's own, not cross-checked
    shard = _shard(folder / "s.tar", _samples(images, labels, key=lambda s: f"sample{int(s[-8:]) * 7 % 1000:06d}",
                                              json_name=True))
    flat = folder / "flat"
    flat.mkdir()
    for n, jpeg in images.items():
        (flat / n).write_bytes(jpeg)
    (folder / "val.txt").write_text("".join(f"{n} {labels[n]}\n" for n in sorted(images)))
    return ["--data", str(shard)], ["--data", str(flat), "--labels", str(folder / "val.txt")]


def _braces(pattern: str):
    def build(folder: Path, weights: Path):
        return ["--data", str(folder / pattern)], "refused"
    return build


def _one_row_group(workers: int):
    def build(folder: Path, weights: Path):
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        base, base_labels = _labelled(folder, weights, 16)
        rng = np.random.default_rng(6)
        rows = []
        labels = []
        for i in range(1, 2001):   # ~128 KB a row, as ImageNet's JPEGs: random APP15 padding, skipped by decoders
            jpeg = base[sorted(base)[i % 16]]
            pad = b"".join(b"\xff\xef" + (65_002).to_bytes(2, "big") + rng.bytes(65_000) for _ in range(2))
            rows.append({"bytes": jpeg[:2] + pad + jpeg[2:], "path": f"ILSVRC2012_val_{i:08d}.JPEG"})
            labels.append(base_labels[sorted(base)[i % 16]])
        image = pa.array(rows, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
        table = pa.table({"image": image, "label": pa.array(labels, pa.int64())})
        one, groups = folder / "one" / "validation-00000-of-00001.parquet", folder / "groups"
        one.parent.mkdir()
        pq.write_table(table, one, row_group_size=len(rows))    # pyarrow's defaults otherwise
        groups.mkdir()
        pq.write_table(table, groups / "validation-00000-of-00001.parquet", row_group_size=100)
        # the labels are the model's own predictions, not ImageNet's: --expect-agreement says so
        common = ["--limit", "16", "--workers", str(workers), "--expect-agreement", "the synthetic model"]
        return ["--data", str(one), *common], ["--data", str(groups), *common]
    return build


CASES += [
    Case("tar: hard links and symbolic links (a deduplicated tree)", _tar_links),
    Case("tar: duplicate names (tar -x keeps the last)", _tar_duplicates),
    Case("tar: GNU sparse members", _tar_sparse),
    Case("tar: pax headers (long non-ASCII paths)", _tar_pax),
    Case("tar: negative base-256 member size", _tar_negative_size),
    Case("tar: replaced in place, same size and mtime (cp -p)", _tar_replaced, _tar_replaced_prepare),
    Case("tar: index folder cannot be written", _tar_index_blocked),
    Case("wds: .cls in Arabic-Indic digits", _wds_cls("٣")),
    Case("wds: .cls of 5000 digits", _wds_cls("5" * 5000)),
    Case("wds: .json nested 100,000 deep", _wds_deep_json),
    Case("wds: keys with dots (a.v2.jpg)", _wds_dotted_keys),
    Case("wds: a key used twice", _wds_duplicated_key),
    Case("wds: keys other than the .json filename", _wds_json_filename),
    Case("shards: s-{0..99999999999}.tar", _braces("s-{0..99999999999}.tar")),
    Case("shards: s-{000000..999999}.tar, none there", _braces("s-{000000..999999}.tar")),
    Case("parquet: one row group of 260 MB, 1 worker", _one_row_group(1)),
    Case("parquet: one row group of 260 MB, 4 workers", _one_row_group(4)),
]


if __name__ == "__main__":
    main()
