"""The sweep at model speed (issue 15, Must 5): what a run costs besides the model, before and after.

    .venv/bin/python benchmarks/sweep_speed.py small --before ../wt-before [--repeat 3]
    .venv/bin/python benchmarks/sweep_speed.py pipeline [--images 400] [--workers 2] [--repeat 5]
    .venv/bin/python benchmarks/sweep_speed.py progress [--images 20000] [--repeat 3]

* ``small``: ``validate --limit 3`` (SE-ResNet-50, random weights, 224 px, CPU, default batch 128), the real
  command in fresh processes of this tree and of ``--before`` (before: padded to a 128-image batch; now: one
  batch of 3), and ``--before`` with ``--batch-size 8`` for scale; wall time and peak RSS (``ru_maxrss`` of the
  child, ``os.wait4``), interleaved per repeat.
* ``pipeline``: a filled decode cache of ``--images`` generated ImageNet-sized JPEGs at 224, delivered as the
  loop consumes it (normalised float32 batches) by DataLoader workers copying from the cache (what a run on a
  filled cache did before) and as slices of the resident crops (now; on the CPU the memory-mapped cache
  itself), interleaved; steady-state images/s and the time to the first batch.
* ``progress``: ``evaluate`` on a resident set of ``--images`` 8x8 crops with a one-layer model and
  ``--save-logits``, so the loop's own cost shows: progress saved after every batch (before; the test hook
  ``SENET_ZOO_VALIDATE_SAVE_EVERY_S=0``) and at most every 5 s (now), interleaved; images/s and saves.

Each prints ``uptime`` before and after: the development machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------------------------- small

def command(tree: Path, argv: list[str], out: Path) -> dict:
    """``python -m senet_zoo.validation ARGV`` from ``tree``: exit, wall seconds, peak RSS of the child. It runs
    in ``out``'s folder: ``-m`` puts the working directory first on the path, which must not be a checkout."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "senet_zoo.validation", *argv, "--output", str(out)], env=env,
                            cwd=out.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{tree}: exit {code}: {proc.stderr.read().decode()[-800:]}")
    record = json.loads(out.read_text())
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "batch_size": record["run"]["batch_size"],
            "loop_s": record["wall_time_s"]}


def small(args, tmp: Path) -> dict:
    from validate import make_images, write_weights

    data = make_images(tmp / "images", 8)
    weights = write_weights(tmp / "weights", "se_resnet50")
    base = ["--model", "se_resnet50", "--weights", str(weights), "--data", str(data), "--limit", "3",
            "--device", "cpu", "--no-progress"]
    variants = {"before, batch 128 (default)": (args.before, []),
                "before, --batch-size 8": (args.before, ["--batch-size", "8"]),
                "now, batch 128 (default)": (REPO, [])}
    runs = {k: [] for k in variants}
    for r in range(args.repeat):
        for name, (tree, extra) in variants.items():
            runs[name].append(command(tree, base + extra, tmp / f"r-{r}.json"))
            print(name, json.dumps(runs[name][-1]), flush=True)
    return {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}


# ------------------------------------------------------------------------------------------ pipeline

def pipeline(args, tmp: Path) -> dict:
    import torch

    from validate import make_images

    from senet_zoo.images.preprocess import Preprocessing
    from senet_zoo.validation.batches import BatchDataset, make_loader, start
    from senet_zoo.validation.cache import STORED, DecodeCache
    from senet_zoo.validation.data import load_eval_set
    from senet_zoo.validation.resident import ResidentCrops

    root = make_images(tmp / "images", args.images)
    evalset = load_eval_set(root)
    prep = Preprocessing("caffe", 256, 224)
    cache = DecodeCache.open(tmp / "cache", evalset.reader, prep, log=lambda s: None)
    fill = make_loader(BatchDataset(evalset.reader, prep, args.batch_size, cache=cache),
                       list(range(-(-len(evalset) // args.batch_size))), args.workers, False)
    for _ in start(fill):
        pass
    del fill
    cache.close()
    cache = DecodeCache.open(tmp / "cache", evalset.reader, prep, log=lambda s: None)
    assert cache.complete
    mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
    batches = list(range(-(-len(evalset) // args.batch_size)))

    def consume(it) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = steady = None
        n = 0
        for _k, images, _st in it:
            x = images.permute(0, 3, 1, 2).float().contiguous().sub_(mean)
            if first is None:
                first = time.perf_counter() - t0
                steady = time.perf_counter()
            else:
                n += x.shape[0]
        return n / (time.perf_counter() - steady), first

    runs = {"workers from the cache (before)": [], "resident slices (now)": []}
    for _ in range(args.repeat):
        loader = make_loader(BatchDataset(evalset.reader, prep, args.batch_size, cache=cache), batches,
                             args.workers, False)
        runs["workers from the cache (before)"].append(consume(start(loader)))
        del loader
        crops = ResidentCrops.load(cache.images, cache.status == STORED, torch.device("cpu"), lambda s: None)
        runs["resident slices (now)"].append(consume(crops.batches(batches, args.batch_size)))
        for k, v in runs.items():
            print(k, f"{v[-1][0]:.0f} img/s, first batch after {v[-1][1]:.3f} s", flush=True)
    return {k: {"img_per_s": statistics.median(x[0] for x in v), "first_batch_s": statistics.median(x[1] for x in v),
                "runs": v} for k, v in runs.items()}


# ------------------------------------------------------------------------------------------ progress

class _Set:
    """What ``evaluate`` reads of an evaluation set, for a synthetic one."""

    def __init__(self, n: int, root: Path):
        self.names = [f"img_{i:06d}" for i in range(n)]
        self.reader, self.root = None, root

    def __len__(self) -> int:
        return len(self.names)


def progress(args, tmp: Path) -> dict:
    import torch

    from senet_zoo.validation import evaluate as ev
    from senet_zoo.validation.distributed import Dist
    from senet_zoo.validation.numerics import set_numerics
    from senet_zoo.validation.progress import Progress
    from senet_zoo.validation.resident import ResidentCrops

    set_numerics("fp32")  # as validate does before the loop
    n = args.images
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    crops = ResidentCrops.load(images, np.ones(n, bool), torch.device("cpu"), lambda s: None)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 1000)).eval()
    opts = ev.EvalOptions(device=torch.device("cpu"), batch_size=args.batch_size, workers=0, save_logits=True,
                          show_progress=False, probe=False, resident=crops)
    saves = {"after every batch (before)": "0", "at most every 5 s (now)": ""}
    runs = {k: [] for k in saves}
    for r in range(args.repeat):
        for name, every in saves.items():
            os.environ[ev.SAVE_EVERY_ENV] = every
            prog = Progress(tmp / f"p-{r}-{len(every)}.progress.npz", {"bench": 1})
            count = [0]
            real_save = prog.save

            def counted(*a, **k):
                count[0] += 1
                real_save(*a, **k)

            prog.save = counted
            t0 = time.perf_counter()
            ev.evaluate(model, _Set(n, tmp), None, [0.0] * 3, [1 / 255] * 3, opts, Dist(), prog, log=lambda s: None)
            runs[name].append({"img_per_s": n / (time.perf_counter() - t0), "saves": count[0]})
            prog.remove()
            print(name, json.dumps(runs[name][-1]), flush=True)
    os.environ.pop(ev.SAVE_EVERY_ENV, None)
    return {k: {m: statistics.median(x[m] for x in v) for m in v[0]} for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("small", "pipeline", "progress"))
    parser.add_argument("--before", type=Path, help="small: a checkout of the code before (e.g. main)")
    parser.add_argument("--images", type=int)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.part == "small" and args.before is None:
        parser.error("small needs --before TREE")
    args.images = args.images or {"small": 3, "pipeline": 400, "progress": 20_000}[args.part]
    print(uptime(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"small": small, "pipeline": pipeline, "progress": progress}[args.part](args, Path(tmp))
    print(json.dumps(result, indent=2))
    print(uptime())
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
