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
``--model/--weights/--output/--device``, which the harness adds. Add a class: write a builder, append it.
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

ROOT = Path(__file__).resolve().parents[1]
SIZE, RESIZE = 64, 73   # small crops: the classes are about reading the data, not the model


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], tuple[list[str], object]]


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


def run(tree: Path, argv: list[str], weights: Path, work: Path, timeout: float, memory_bytes: int) -> dict:
    record = work / f"record-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "senet_zoo.validation", "--model", "se_resnet50", "--weights", str(weights),
           "--device", "cpu", "--img-size", str(SIZE), "--batch-size", "4", "--no-progress",
           "--output", str(record), *argv]

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        os.setsid()

    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=work, preexec_fn=limits,
                                env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                     "HOME": str(work), "HF_HUB_OFFLINE": "1"})
        killed = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.strip()]
    result = {"exit": "killed" if killed else proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
              "numbers": None, "message": lines[-1] if lines else ""}
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
            argv, expect = case.build(folder, weights)
            if isinstance(expect, list):  # the reference reading, by this tree
                ref_dir = folder / "reference"
                ref_dir.mkdir()
                ref = run(ROOT, expect, weights, ref_dir, args.timeout, memory)
                if ref["numbers"] is None:
                    raise SystemExit(f"{case.name}: the reference reading failed: {ref['message']}")
                expect = ref["numbers"][:2]
            cells = [case.name, "refused (exit 2)" if expect == "refused" else f"{expect[0]:.2f}/{expect[1]:.2f}"]
            for label, tree in trees:
                work = folder / f"run-{label}"
                work.mkdir()
                r = run(tree, argv, weights, work, args.timeout, memory)
                n = r["numbers"]
                cells += [str(r["exit"]), f"{n[0]:.2f}/{n[1]:.2f} ({n[2]})" if n else "-", verdict(r, expect),
                          f"{r['wall_s']:.1f}", f"{r['peak_rss_mb']:.0f}", clip(r["message"])]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nper run: timeout {args.timeout:.0f} s, RLIMIT_AS {args.memory_gb:g} GiB; CPU, --img-size {SIZE}, "
          "batch 4; wall time includes the interpreter start and imports")


if __name__ == "__main__":
    main()
