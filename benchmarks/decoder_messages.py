"""What catching libjpeg's stderr costs per image: ``cv2.imdecode`` alone against the same call inside
``decoder_messages.call_capturing_stderr`` (fd 2 redirected to a temporary file and back), on one core.

    .venv/bin/python benchmarks/decoder_messages.py [--images 200] [--repeat 5]

Decodes generated ImageNet-sized JPEGs (500x375, quality 90) from memory, interleaving the two variants in
each repeat; also times the redirection around an empty call. Medians of the repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from senet_zoo.images.decoder_messages import call_capturing_stderr  # noqa: E402

FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def jpegs(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # smooth content, realistic JPEG sizes
        img = cv2.resize(small, (500, 375) if i % 2 else (375, 500), interpolation=cv2.INTER_CUBIC)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
    return out


def per_image_us(fn, items) -> float:
    t = time.perf_counter()
    for x in items:
        fn(x)
    return (time.perf_counter() - t) / len(items) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    files = jpegs(args.images)
    plain, captured, empty = [], [], []
    for _ in range(args.repeat):
        plain.append(per_image_us(lambda b: cv2.imdecode(b, FLAGS), files))
        captured.append(per_image_us(lambda b: call_capturing_stderr(lambda: cv2.imdecode(b, FLAGS)), files))
        empty.append(per_image_us(lambda b: call_capturing_stderr(lambda: None), files * 10))
    p, c, e = (statistics.median(v) for v in (plain, captured, empty))
    print(json.dumps({"machine": platform.machine(), "cpu_count": os.cpu_count(), "opencv": cv2.__version__,
                      "images": args.images, "repeat": args.repeat, "load_avg": os.getloadavg()}))
    print(f"cv2.imdecode alone      {p:8.1f} us/image")
    print(f"inside the capture      {c:8.1f} us/image   ({(c - p) / p * 100:+.1f}%)")
    print(f"the redirection alone   {e:8.1f} us/call")


if __name__ == "__main__":
    main()
