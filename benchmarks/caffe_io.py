"""Time and peak memory of reading a SENet-154-sized caffemodel (~460 MB, 115 M float32).

    .venv/bin/python benchmarks/caffe_io.py [--dir DIR] [--naive]

Writes a synthetic caffemodel shaped like SENet-154's (930 layers: 257 Convolution, 157 BatchNorm, 157 Scale,
one InnerProduct, ~115.7 M floats) with ``caffe_io.write_caffemodel``, and the same weights with legacy
non-packed floats (one tag per float, as very old writers did). Each measurement runs in a fresh subprocess and
reports wall time and peak RSS (``ru_maxrss``) next to the same interpreter merely reading the file's bytes.
The page cache is warm (the file was just written), so the times are CPU/memory-bound, not disk-bound.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from senet_zoo.converters import caffe_io, caffe_pb2
mode, path = sys.argv[1], Path(sys.argv[2])
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "read_bytes":
    data = path.read_bytes(); n = len(data) // 4
elif mode == "read_weights":
    net = caffe_io.read_weights(path); n = sum(b.size for l in net.layers for b in l.blobs)
elif mode == "naive":  # what plain protobuf would do
    msg = caffe_pb2.NetParameter.FromString(path.read_bytes())
    n = sum(np.array(b.data, np.float32).size for l in msg.layer for b in l.blobs)
seconds = time.perf_counter() - t
print(json.dumps({"mode": mode, "seconds": seconds, "floats": n, "import_rss_mb": start_rss / 1024,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthetic_net(seed: int = 0):
    import numpy as np

    from senet_zoo.converters import caffe_io, caffe_pb2

    rng = np.random.default_rng(seed)
    layers = [caffe_io.CaffeLayer("data", "Input", [], ["data"], [], caffe_pb2.LayerParameter(
        name="data", type="Input", input_param=caffe_pb2.InputParameter(shape=[caffe_pb2.BlobShape(dim=[1, 3, 224, 224])])))]

    def add(name, type_, blobs, **params):
        proto = caffe_pb2.LayerParameter(name=name, type=type_, bottom=["x"], top=["x"], **params)
        layers.append(caffe_io.CaffeLayer(name, type_, ["x"], ["x"], blobs, proto))

    for i in range(257):
        add(f"conv{i}", "Convolution", [rng.standard_normal((256, 192, 3, 3), dtype=np.float32)],
            convolution_param=caffe_pb2.ConvolutionParameter(num_output=256, kernel_size=[3], bias_term=False))
        if i < 157:
            add(f"conv{i}/bn", "BatchNorm", [rng.standard_normal(256, dtype=np.float32) for _ in range(2)]
                + [np.ones(1, np.float32)], batch_norm_param=caffe_pb2.BatchNormParameter(use_global_stats=True))
            add(f"conv{i}/bn/scale", "Scale", [rng.standard_normal(256, dtype=np.float32) for _ in range(2)],
                scale_param=caffe_pb2.ScaleParameter(bias_term=True))
        add(f"conv{i}/relu", "ReLU", [])
    add("fc", "InnerProduct", [rng.standard_normal((1000, 2048), dtype=np.float32),
                               rng.standard_normal(1000, dtype=np.float32)],
        inner_product_param=caffe_pb2.InnerProductParameter(num_output=1000))
    return caffe_io.CaffeNet("SENet-154-synthetic", layers, Path("<synthetic>"), (1, 3, 224, 224))


def write_nonpacked(net, path: Path) -> None:
    """The same net with every float as its own tagged record (protobuf's non-packed encoding), built with numpy."""
    import numpy as np

    from senet_zoo.converters.caffe_io import schema, wire

    def varint(v):
        return wire._encode_varint(v)

    with open(path, "wb") as f:
        f.write(b"\x0a" + varint(len(net.name)) + net.name.encode())
        for layer in net.layers:
            rest = schema._layer_message(layer).SerializeToString()
            blobs = []
            for b in layer.blobs:
                records = np.empty((b.size, 5), np.uint8)
                records[:, 0] = 0x2D
                records[:, 1:] = np.ascontiguousarray(b, "<f4").reshape(-1, 1).view(np.uint8)
                shape = b"".join(b"\x08" + varint(d) for d in b.shape)  # non-packed dims too
                blob = records.tobytes() + b"\x3a" + varint(len(shape)) + shape
                blobs.append(b"\x3a" + varint(len(blob)) + blob)
            body = rest + b"".join(blobs)
            f.write(b"\xa2\x06" + varint(len(body)) + body)


def make(directory: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from senet_zoo.converters import caffe_io

    packed, nonpacked = directory / "senet154.caffemodel", directory / "senet154-nonpacked.caffemodel"
    net = synthetic_net()
    t = time.perf_counter()
    caffe_io.write_caffemodel(net, packed)
    write_s = time.perf_counter() - t
    write_nonpacked(net, nonpacked)
    print(f"synthetic SENet-154: {packed.stat().st_size / 1e6:.1f} MB packed (write_caffemodel {write_s:.2f} s), "
          f"{nonpacked.stat().st_size / 1e6:.1f} MB non-packed")


def run_child(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], check=True, capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="where to write the synthetic files (default: a temp dir)")
    parser.add_argument("--naive", action="store_true", help="also time plain protobuf ParseFromString (slow)")
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make(args.make)
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        packed, nonpacked = Path(tmp) / "senet154.caffemodel", Path(tmp) / "senet154-nonpacked.caffemodel"
        # made in a subprocess: ru_maxrss survives fork+exec, so this process must stay small for the children
        subprocess.run([sys.executable, __file__, "--make", tmp], check=True, cwd=ROOT)
        runs = [("read_bytes", packed), ("read_weights", packed), ("read_bytes", nonpacked),
                ("read_weights", nonpacked)] + ([("naive", packed)] if args.naive else [])
        for mode, path in runs:
            r = run_child(mode, path)
            size_mb = path.stat().st_size / 2**20
            print(f"{path.name:32s} {mode:13s} {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MiB "
                  f"(interpreter+imports {r['import_rss_mb']:.0f} MiB; file {size_mb:.0f} MiB; "
                  + (f"{r['floats'] / 1e6:.1f} M floats)" if mode != "read_bytes" else ")"))


if __name__ == "__main__":
    main()
