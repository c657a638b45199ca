"""Conversion time and peak memory per model, against reading the same caffemodel once (the I/O floor).

Each measurement runs in a fresh subprocess so its peak RSS (VmHWM) belongs to that one job. The
caffemodels are release-format files with seeded synthetic weights (the official topology and blob
shapes, so the same size as the real release files).

    .venv/bin/python benchmarks/convert.py [--models senet154 se_resnet50] [--repeat 3] [--markdown]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ["se_bn_inception", "se_resnet50", "se_resnet101", "se_resnet152", "se_resnext50_32x4d",
          "se_resnext101_32x4d", "senet154"]

# Run in the child: one job, then report wall time and peak RSS.
CHILD = r"""
import json, sys, time
from pathlib import Path


def hwm_mb():
    # VmHWM is this process's own peak RSS; ru_maxrss would also carry the parent's peak across fork/exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


job, name, caffemodel, prototxt, out = sys.argv[1:6]
if job == "convert":
    from senet_zoo.converters.convert import convert
    import senet_zoo.models, senet_zoo.converters.caffe_io  # imports (torch) are not the conversion's memory
base = hwm_mb()
t0 = time.perf_counter()
if job == "read_bytes":
    with open(caffemodel, "rb") as f:
        while f.read(1 << 24):
            pass
    # the floor a converter cannot beat: the whole file in memory once
    data = Path(caffemodel).read_bytes(); del data
else:
    convert(name, caffemodel, out, prototxt, allow_unknown_hash=True)
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "peak_rss_mb": hwm_mb(),
                  "baseline_rss_mb": base}))
"""


def _run(job: str, name: str, caffemodel: Path, prototxt: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, job, name, str(caffemodel), str(prototxt), str(out)],
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_release_files(name: str, folder: Path) -> tuple[Path, Path]:
    from senet_zoo import registry
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.release_layout import write_release_prototxt
    from senet_zoo.converters.synthetic import synthesize

    ckpt = registry.get(name)
    prototxt = write_release_prototxt(ckpt.architecture, folder / ckpt.prototxt)
    caffemodel = folder / ckpt.caffemodel
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=0), caffemodel)
    return caffemodel, prototxt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per job; the best is reported")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
          f"Python {platform.python_version()}; best of {args.repeat}")
    print("| model | caffemodel MB | read once: s | read once: peak RSS MB | convert: s | convert: peak RSS MB "
          "| (convert peak RSS - RSS after imports) / file size |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            caffemodel, prototxt = make_release_files(name, Path(tmp))
            size_mb = caffemodel.stat().st_size / 2**20
            floor = min((_run("read_bytes", name, caffemodel, prototxt, Path(tmp) / "o") for _ in range(args.repeat)),
                        key=lambda r: r["seconds"])
            conv = min((_run("convert", name, caffemodel, prototxt, Path(tmp) / "out") for _ in range(args.repeat)),
                       key=lambda r: r["seconds"])
            print(f"| {name} | {size_mb:.0f} | {floor['seconds']:.2f} | {floor['peak_rss_mb']:.0f} | "
                  f"{conv['seconds']:.2f} | {conv['peak_rss_mb']:.0f} | "
                  f"{(conv['peak_rss_mb'] - conv['baseline_rss_mb']) / size_mb:.2f} |", flush=True)


if __name__ == "__main__":
    main()
