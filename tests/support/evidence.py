"""Release-format caffemodels with seeded, uncalibrated weights in exactly Caffe's blob shapes.

Unlike ``converters.synthetic.synthesize`` no forward pass is run, so the bytes depend on numpy's seeded
generator only (identical on every machine): what the pinned-hash test and the fuzzer need.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from senet_zoo import registry
from senet_zoo.converters import caffe_io
from senet_zoo.converters.caffe_io import wire
from senet_zoo.converters.convert import caffe_blob_shapes
from senet_zoo.converters.release_layout import parameter_layers, write_release_prototxt


def torch_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    import torch

    from senet_zoo.models import build

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build(arch).state_dict().items()}


def seeded_net(model: str, prototxt: Path, seed: int = 0) -> caffe_io.CaffeNet:
    ckpt = registry.get(model)
    net = caffe_io.read_prototxt(prototxt)
    shapes = torch_shapes(ckpt.architecture)
    rng = np.random.default_rng(seed)
    wanted = {layer.name: layer for layer in parameter_layers(ckpt.architecture)}
    layers = []
    for layer in net.layers:
        spec = wanted.get(layer.name)
        blobs = []
        if spec is not None:
            for what, shape in caffe_blob_shapes(spec, shapes):
                if what == "scale factor":
                    blobs.append(np.array([rng.uniform(0.5, 2.0)], np.float32))
                elif what == "variance":
                    blobs.append(rng.random(shape, dtype=np.float32) + np.float32(0.5))
                else:
                    blobs.append((rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(0.1))
        layers.append(dataclasses.replace(layer, blobs=blobs))
    return dataclasses.replace(net, layers=layers)


def seeded_release(model: str, folder: Path, seed: int = 0) -> tuple[Path, Path, caffe_io.CaffeNet]:
    """(prototxt, caffemodel, net) in ``folder`` under the release's file names."""
    ckpt = registry.get(model)
    folder.mkdir(parents=True, exist_ok=True)
    prototxt = write_release_prototxt(ckpt.architecture, folder / ckpt.prototxt)
    net = seeded_net(model, prototxt, seed)
    caffemodel = folder / ckpt.caffemodel
    caffe_io.write_caffemodel(net, caffemodel)
    return prototxt, caffemodel, net


# ---------------------------------------------------------------------------------------------------------------
# Hostile files: small on disk, built to cost the reader time or memory (issue 7). Written byte by byte so that
# they are exactly what the issue describes, whatever our writer would do; shared by the tests and
# benchmarks/hostile.py.

def wire_varint(value: int) -> bytes:
    return wire._encode_varint(value)


def wire_field(number: int, payload: bytes) -> bytes:
    return wire_varint(number << 3 | 2) + wire_varint(len(payload)) + payload


def interleaved_nonpacked_caffemodel(path: Path, pairs: int = 350_000) -> Path:
    """One V2 layer whose blob alternates non-packed ``data`` and ``diff`` float records (5 bytes each), so
    every run of data records is one long: 3.5 MB at the default. The shape is right, so it converts as a
    blob of ``pairs`` values."""
    record = b"\x2d\x00\x00\x80\x3f" + b"\x35\x00\x00\x00\x00"  # data = 1.0, diff = 0.0
    blob = wire_field(7, wire_varint(1 << 3) + wire_varint(pairs)) + record * pairs  # shape {dim: pairs}
    layer = wire_field(1, b"conv") + wire_field(2, b"Convolution") + wire_field(7, blob)
    path.write_bytes(wire_field(1, b"hostile") + wire_field(100, layer))
    return path


def empty_layer_records(path: Path, size: int = 9_000_000) -> Path:
    """A net name, then ``size`` bytes of empty V2 layer records (3 bytes each: 3 M layers at the default)."""
    path.write_bytes(wire_field(1, b"hostile") + b"\xa2\x06\x00" * (size // 3))
    return path


def sparse_hdf5(path: Path, values: int = 750_000_000) -> Path:
    """A few KB of HDF5 whose one blob declares ``values`` float32 (3 GB) with no storage allocated."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("data/conv1/0", shape=(values,), dtype="<f4")
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with one tiny IDAT: what a decoder would allocate for."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose frame header is rewritten to claim width x height."""
    import struct

    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


VAL1 = "ILSVRC2012_val_00000001.JPEG"

# label files (name -> content) that once ended in a traceback or were silently misread
HOSTILE_LABELS = {
    "digits5000.txt": f"{VAL1} {'9' * 5000}\n",
    "superscript.txt": f"{VAL1} \u00b9\u00b2\n",
    "arabic_indic.txt": f"{VAL1} \u0661\u0662\n",
    "fullwidth.txt": f"{VAL1} \uff11\uff12\n",
    "deep.json": "[" * 20_000 + "]" * 20_000,
    "digits5000.json": '{"%s": %s}' % (VAL1, "9" * 5000),
}


def v1_caffemodel_with_name(path: Path, name: bytes) -> Path:
    """A legacy V1 net of one Convolution layer (one 1-value blob) whose name is the raw bytes ``name``."""
    blob = wire_field(7, wire_varint(1 << 3) + wire_varint(1)) + wire_field(5, b"\x00\x00\x80\x3f")
    layer = wire_field(4, name) + b"\x28\x04" + wire_field(6, blob)  # name, type CONVOLUTION, blobs
    path.write_bytes(wire_field(1, b"hostile") + wire_field(2, layer))
    return path


# ---------------------------------------------------------------------------------------------------------------
# The CLI as a user meets it: a subprocess, its exit code, stderr and peak memory


@dataclasses.dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float  # the child's ru_maxrss (it starts at this process's RSS: fork)


def run_cli(*args, env: dict | None = None, timeout: float = 300, cwd=None) -> CliRun:
    """``python -m senet_zoo ARGS`` in a subprocess, reaped with ``os.wait4`` for its own peak RSS."""
    import os
    import subprocess
    import sys
    import tempfile
    import time

    root = Path(__file__).resolve().parents[2]
    full_env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "senet_zoo", *map(str, args)], stdout=out, stderr=err,
                                env=full_env, cwd=cwd)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError(f"senet-zoo {' '.join(map(str, args))} ran over {timeout} s")
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        err.seek(0)
        return CliRun(proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024)


def assert_one_line_error(res: CliRun, *fragments) -> str:
    """Exit 2, exactly one line on stderr, no traceback, every fragment in that line."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


def black_png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit RGB PNG of any size, compressed row by row (never held decoded): a 20000x20000
    one is ~1 MB, a 100000x1 one ~300 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    rows = bytes(1 + 3 * width) * min(height, max(1, (1 << 22) // (1 + 3 * width)))  # filter byte 0, pixels
    per = len(rows) // (1 + 3 * width)
    idat = b"".join(z.compress(rows[:(1 + 3 * width) * min(per, height - at)]) for at in range(0, height, per))
    idat += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
