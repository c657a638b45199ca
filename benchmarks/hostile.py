"""Wall time, peak memory and outcome of each hostile input class of issue 7, for this tree and another.

    .venv/bin/python benchmarks/hostile.py [--before TREE] [--timeout 60] [--memory-gb 8]

Builds each file class once (``tests/support/evidence.py``) and hands it, in a fresh child process per tree, to
the function that reads it in ``convert`` / ``validate`` (``caffe_io.read_weights``, ``Preprocessing.decode_rgb``,
``label_files.read_label_file``). Each child runs under a wall-clock timeout and an ``RLIMIT_AS`` address-space cap; its
peak RSS is the kernel's ``ru_maxrss`` of that child (``os.wait4``), so it is known even when the child is
killed. ``--before`` is a checkout of the code before issue 7, e.g.
``git worktree add --detach ../wt-before 30d4783``, measured with the same files in the same run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from limited import run_limited

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
kind, path = sys.argv[1], sys.argv[2]
from senet_zoo.errors import SenetZooError
if kind == "weights":
    from senet_zoo.converters import caffe_io
elif kind == "image":
    try:
        from senet_zoo.images.preprocess import BadImage, Preprocessing
    except ImportError:  # a tree before the images/ package
        from senet_zoo.validation.preprocess import BadImage, Preprocessing
else:
    from pathlib import Path
    try:
        from senet_zoo.validation import labels as label_files
    except ImportError:  # a tree before validation/labels.py
        from senet_zoo.validation import data as label_files
print(json.dumps({"import_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
t = time.perf_counter()
try:
    if kind == "weights":
        net = caffe_io.read_weights(path)
        outcome = f"read: {len(net.layers)} layers"
    elif kind == "image":
        try:
            Preprocessing("caffe", 256, 224).decode_rgb(open(path, "rb").read())
            outcome = "decoded"
        except BadImage as e:
            outcome = f"bad image: {e}"
    else:
        labels, _, _ = label_files.read_label_file(Path(path), "json" if path.endswith(".json") else "caffe")
        outcome = f"read: {labels}"
except SenetZooError as e:
    outcome = f"refused: {e.message}"
except BaseException as e:
    outcome = f"traceback: {type(e).__name__}: {e}"
print(json.dumps({"seconds": time.perf_counter() - t, "outcome": outcome}), flush=True)
"""


def build(folder: Path, pairs: int = 350_000) -> list[tuple[str, str, Path]]:
    """(case, kind, file) for every class; the files are written into ``folder``; ``pairs`` sizes the
    interleaved-records file (10 bytes a pair)."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from support import evidence

    cases = [
        (f"{pairs * 10 / 1e6:g} MB caffemodel, interleaved non-packed float records", "weights",
         evidence.interleaved_nonpacked_caffemodel(folder / "interleaved.caffemodel", pairs=pairs)),
        ("9 MB of empty layer records (3 M layers)", "weights", evidence.empty_layer_records(folder / "empty.caffemodel")),
        ("300 KB of empty layer records (100,000 layers; the limit is now 10,000)", "weights",
         evidence.empty_layer_records(folder / "empty100k.caffemodel", size=300_000)),
        ("HDF5 declaring a sparse 3 GB dataset", "weights", evidence.sparse_hdf5(folder / "sparse.caffemodel.h5")),
    ]
    cases.append(("V1 caffemodel, layer name not UTF-8", "weights",
                  evidence.v1_caffemodel_with_name(folder / "v1.caffemodel", b"conv\xff1")))
    for name, data in (("PNG 100000x1", evidence.black_png(100000, 1)),
                       ("PNG 20000x20000", evidence.black_png(20000, 20000)),
                       ("JPEG header claiming 65500x65500", evidence.jpeg_claiming(65500, 65500))):
        path = folder / (name.replace(" ", "_") + (".jpg" if "JPEG" in name else ".png"))
        path.write_bytes(data)
        cases.append((f"{name} ({len(data)} bytes)", "image", path))
    for filename, text in evidence.HOSTILE_LABELS.items():
        path = folder / filename
        path.write_text(text, encoding="utf-8")
        cases.append((f"label file {filename}", "labels", path))
    return cases


def measure(tree: Path, kind: str, path: Path, timeout: float, memory_bytes: int) -> dict:
    """Run the child on ``tree``; wall time, peak RSS (MiB) and the outcome, or how it was stopped."""
    done = run_limited([sys.executable, "-c", CHILD, kind, str(path)], cwd=tree, timeout=timeout,
                       memory_bytes=memory_bytes,
                       env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    result = {"wall_s": done.wall_s, "peak_rss_mb": done.peak_rss_mb, "import_rss_mb": None}
    for line in done.lines:
        try:
            result.update(json.loads(line))
        except (ValueError, TypeError):
            continue
    if done.returncode is None:
        result["outcome"] = f"killed at the {timeout:.0f} s timeout"
    elif "outcome" not in result:
        tail = done.lines[-1] if done.lines else ""
        result["outcome"] = f"died (exit {done.returncode}): {tail}"
    if any(sign in result["outcome"] for sign in ("MemoryError", "bad_alloc", "Insufficient memory", "allocate")):
        result["outcome"] = f"out of memory at the {memory_bytes / (1 << 30):g} GiB cap: " + result["outcome"]
    return result


def clip(text: str, n: int = 90) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= n else text[:n - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the code before issue 7 (e.g. at 30d4783)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per child (default 60)")
    parser.add_argument("--memory-gb", type=float, default=8.0, help="RLIMIT_AS of each child (default 8)")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT")
    parser.add_argument("--interleaved-pairs", type=int, default=350_000, metavar="N",
                        help="size of the interleaved-records file: N data/diff pairs, 10 bytes each (default 350000)")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        made = build(args.make, args.interleaved_pairs)
        print(json.dumps([(case, kind, str(path)) for case, kind, path in made]))
        return
    trees = [("now", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    memory = int(args.memory_gb * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        # built in a subprocess: ru_maxrss survives fork+exec, so this process must stay small for the children
        made = subprocess.run([sys.executable, __file__, "--make", tmp, "--interleaved-pairs",
                               str(args.interleaved_pairs)], check=True, capture_output=True, text=True)
        cases = [(case, kind, Path(path)) for case, kind, path in json.loads(made.stdout)
                 if args.only is None or args.only in case]
        header = "| input | size | " + " | ".join(f"{label}: outcome | {label}: s | {label}: peak RSS MiB"
                                                 for label, _ in trees) + " |"
        print(header)
        print("|" + "---|" * (2 + 3 * len(trees)))
        for case, kind, path in cases:
            cells = [case, f"{path.stat().st_size:,} B"]
            for _, tree in trees:
                r = measure(tree, kind, path, args.timeout, memory)
                cells += [clip(r["outcome"]), f"{r['wall_s']:.2f}", f"{r['peak_rss_mb']:.0f}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nper child: timeout {args.timeout:.0f} s, RLIMIT_AS {args.memory_gb:g} GiB; wall time includes the "
          "interpreter start and imports (~0.2-0.5 s); peak RSS includes the imports")


if __name__ == "__main__":
    main()
