"""The measurements of the device check, each ``fn(seconds, ...) -> dict`` (``seconds``: how long a step that
can stop early should run). Every library they use is imported by ``gpu_validate.load_libraries`` before the
first step, outside any alarm; the imports here only bind names already in ``sys.modules``."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

SHAPES = [(375, 500), (500, 375), (333, 500), (500, 333), (500, 500)]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668"]
AMP = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
SE_RANGE = "senet_zoo::se_module"


# ------------------------------------------------------------------------------------------ machine

def compiler() -> dict:
    """What Triton (torch.compile on CUDA) needs to build its launchers: a C compiler and Python.h."""
    cc = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    include = sysconfig.get_paths().get("include") or ""
    header = os.path.join(include, "Python.h")
    return {"cc": shutil.which(cc) if cc else None, "python_h": header if os.path.isfile(header) else None}


def _driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as f:
            first = f.readline()
        return first.split("Kernel Module")[-1].split()[0] if "Kernel Module" in first else first.strip()[:80]
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10)
            return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            return None
    return None


def environment(seconds, device: str, imports: dict, loader: dict) -> dict:
    """The machine and the libraries, and the loader plan derived from them (run without an alarm: on CUDA
    this is where CUDA initialises)."""
    import cv2
    import torch

    import senet_zoo
    from senet_zoo import host

    shm = host.shm_bytes()
    info = {"senet_zoo_from": str(Path(senet_zoo.__file__).resolve().parent),
            "python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
            "cuda": torch.version.cuda, "opencv": cv2.__version__, "timm": imports.get("timm_version"),
            "imports_s": imports.get("seconds"), "import_errors": imports.get("errors") or None,
            "cpu_affinity": host.affinity_cpus(), "cgroup_cpu_quota": host.cpu_quota(),
            "usable_cpus": host.usable_cpus(),
            "shm_mib": None if shm is None else round(shm[0] / 2**20), 
            "shm_free_mib": None if shm is None else round(shm[1] / 2**20),
            **compiler(), "machine": platform.machine(), "platform": platform.platform(),
            "workers": loader["workers"], "batch_size": loader["batch"], "loader_note": loader["note"]}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device == "cuda":
        t = time.monotonic()
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_init_s"] = round(time.monotonic() - t, 2)
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["driver"] = _driver()
    return info


# --------------------------------------------------------------------------------------------- data

def _one_jpeg(task) -> None:
    import cv2

    path, i, seed = task
    rng = np.random.default_rng(seed * 100_003 + i)
    h, w = SHAPES[i % len(SHAPES)]
    base = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    mid = cv2.resize(rng.normal(0, 30, (h // 6, w // 6, 3)).astype(np.float32), (w, h))
    img = np.clip(base + mid + rng.normal(0, 14, (h, w, 3)).astype(np.float32), 0, 255).astype(np.uint8)
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def make_data(seconds, root: Path, n: int, unique: int, processes: int) -> dict:
    """``unique`` JPEGs made in parallel, hard-linked to ``n`` names in an ImageFolder tree (kept if complete)."""
    tree = root / f"images-{n}-{unique}"
    marker = tree / ".complete"
    if not marker.exists():
        src = root / f"unique-{unique}"
        src.mkdir(parents=True, exist_ok=True)
        paths = [str(src / f"u{i:05d}.JPEG") for i in range(unique)]
        todo = [(p, i, 0) for i, p in enumerate(paths) if not os.path.exists(p)]
        if todo:
            with multiprocessing.get_context("fork").Pool(max(1, processes)) as pool:
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
    from validate import write_weights  # benchmarks/validate.py, imported by load_libraries

    return {"weights": str(write_weights(root / "weights" / name, name))}


# ------------------------------------------------------------------------------------- the ceiling

def gmacs(seconds, name: str, img_size: int) -> dict:
    """Multiply-adds per image, counted on the meta device (no arithmetic)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from senet_zoo import registry
    from senet_zoo.models import build

    with torch.device("meta"):
        model = build(registry.get(name).architecture).eval()
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, img_size, img_size))
    return {"gmacs": counter.get_total_flops() / 2 / 1e9, "img_size": img_size}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(seconds, device: str, dtype_name: str) -> dict:
    """Dense matmul TFLOP/s at this precision (fp32: TF32 off, as exact mode), the ceiling's denominator.
    Synchronised once per timed loop, after a calibration that sizes it."""
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
    t = time.perf_counter()
    a @ b
    _sync(dev)
    reps = _reps(time.perf_counter() - t, min(seconds, 3.0))
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(dev)
    elapsed = time.perf_counter() - t
    return {"tflops": 2 * size**3 * reps / elapsed / 1e12, "size": size, "reps": reps}


def _reps(one_s: float, target_s: float, most: int = 500) -> int:
    return max(1, min(most, int(target_s / max(one_s, 1e-6))))


# ------------------------------------------------------------------------------------ model alone

def _prepared(name: str, weights: str, device, mode: str):
    """The model exactly as ``validate`` prepares it (``runner.prepare_model``: BatchNorm folded, device,
    memory format)."""
    import senet_zoo
    from senet_zoo.validation.runner import prepare_model

    model, channels_last, _, _ = prepare_model(senet_zoo.create_model(name, pretrained=weights), device, mode)
    return model, channels_last


def _forward_fn(model, channels_last: bool, device, mode: str, bs: int, img: int):
    """normalise + forward + top-5 on a uint8 batch already on the device, as ``evaluate``'s loop does."""
    import torch

    images = torch.randint(0, 256, (bs, img, img, 3), dtype=torch.uint8, device=device)
    mean = torch.tensor([123.0, 117.0, 104.0], device=device).view(1, 3, 1, 1)
    amp = getattr(torch, AMP[mode]) if AMP[mode] else None
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext

    def once():
        x = images.permute(0, 3, 1, 2).float()
        if not channels_last:
            x = x.contiguous()
        x = x.sub_(mean)
        with autocast():
            return model(x).float().topk(5, dim=1).indices
    return once


def _timed(once, device, bs: int, target_s: float) -> dict:
    """Warm-up, one synchronised call to size the loop, then the loop synchronised once at its end."""
    once()
    if device.type == "cuda":
        once()  # the second call: cuDNN's autotuning (AMP) and the allocator's growth are done by now
    _sync(device)
    t = time.perf_counter()
    once()
    _sync(device)
    reps = _reps(time.perf_counter() - t, target_s)
    t = time.perf_counter()
    for _ in range(reps):
        once()
    _sync(device)
    elapsed = time.perf_counter() - t
    return {"images_per_s": bs * reps / elapsed, "reps": reps, "loop_s": round(elapsed, 3)}


def model_only(seconds, name: str, weights: str, device_name: str, mode: str, bs: int, img: int) -> dict:
    """Images/s of the model alone: validate's settings, a uint8 batch already on the device."""
    import torch

    from senet_zoo.validation.numerics import set_numerics

    set_numerics(mode)
    device = torch.device(device_name)
    model, channels_last = _prepared(name, weights, device, mode)
    with torch.inference_mode():
        out = _timed(_forward_fn(model, channels_last, device, mode, bs, img), device, bs, min(seconds, 5.0))
    return {**out, "batch_size": bs}


def model_only_compiled(seconds, name: str, weights: str, device_name: str, mode: str, bs: int, img: int) -> dict:
    """As ``model_only`` through ``torch.compile`` (what ``validate --compile`` does: static shapes); the
    compile (first call) is timed apart, outside the rate's clock."""
    import torch

    from senet_zoo.validation.numerics import set_numerics

    set_numerics(mode)
    device = torch.device(device_name)
    model, channels_last = _prepared(name, weights, device, mode)
    model = torch.compile(model, dynamic=False)
    once = _forward_fn(model, channels_last, device, mode, bs, img)
    with torch.inference_mode():
        t = time.perf_counter()
        once()
        _sync(device)
        compile_s = time.perf_counter() - t
        out = _timed(once, device, bs, min(seconds, 5.0))
    return {**out, "compile_s": round(compile_s, 1), "batch_size": bs}


# --------------------------------------------------------------------------------------- profile

def _classify(chain: list[str]) -> str:
    """The share a profiled op belongs to, from its name and its callers' (innermost first)."""
    if SE_RANGE in chain:
        return "SE gate and scale"
    names = " ".join(chain)
    if "conv" in names:
        return "convolution"
    elementwise = ("relu", "add", "mul", "sub", "div", "sigmoid", "clamp", "copy", "_to_copy", "clone",
                   "contiguous", "threshold", "fill")
    top = chain[-1] if chain else ""
    if any(k in n for n in chain for k in elementwise) and "pool" not in top and "mean" not in top:
        return "elementwise"
    return "other (pooling, classifier, top-5)"


def profile(seconds, name: str, weights: str, device_name: str, mode: str, bs: int, img: int) -> dict:
    """Where the time of the model alone goes (``torch.profiler``): the top kernels (CUDA; on the CPU the
    top operators) and the shares of convolution, SE (its pool, two 1x1 convolutions, sigmoid and scale,
    marked by wrapping every SE module in a named range), elementwise work and the rest."""
    import functools

    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    from senet_zoo.models.layers import SEModule
    from senet_zoo.validation.numerics import set_numerics

    set_numerics(mode)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    model, channels_last = _prepared(name, weights, device, mode)

    def marked(forward, x):
        with record_function(SE_RANGE):
            return forward(x)

    for m in model.modules():
        if isinstance(m, SEModule):
            m.forward = functools.partial(marked, m.forward)
    once = _forward_fn(model, channels_last, device, mode, bs, img)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.inference_mode():
        once()
        _sync(device)
        reps = 3 if cuda else 1
        with torch_profile(activities=activities) as prof:
            for _ in range(reps):
                once()
            _sync(device)

    def self_time(e) -> float:
        return float(getattr(e, "self_device_time_total", 0.0) if cuda else e.self_cpu_time_total)

    shares: dict[str, float] = {}
    for e in prof.events():
        if str(getattr(e, "device_type", "")).endswith("CPU") and self_time(e) > 0:
            chain, p = [e.name], e.cpu_parent
            while p is not None:
                chain.append(p.name)
                p = p.cpu_parent
            key = _classify(chain)
            shares[key] = shares.get(key, 0.0) + self_time(e)
    total = sum(shares.values()) or float("nan")
    averages = prof.key_averages()
    kernels = {a.key: float(getattr(a, "device_time_total", 0.0) or 0.0) for a in averages
               if str(getattr(a, "device_type", "")).endswith("CUDA")}
    if cuda and kernels:
        top = sorted(kernels.items(), key=lambda kv: -kv[1])[:8]
        kind = "CUDA kernels"
    elif cuda:  # this torch lists no kernel entries: the operators that launched them, by their kernels' time
        ops = {a.key: float(getattr(a, "self_device_time_total", 0.0) or 0.0) for a in averages}
        ops.pop(SE_RANGE, None)
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
        kind = "operators (their kernels' time)"
    else:
        ops = {a.key: float(a.self_cpu_time_total) for a in averages}
        ops.pop(SE_RANGE, None)
        top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
        kind = "CPU operators (self time)"
    per_batch_ms = total / reps / 1e3
    return {"what": f"{name} {mode}, batch {bs}, {reps} forward(s) profiled on {device.type}",
            "device_ms_per_batch": round(per_batch_ms, 2), "top_kind": kind,
            "top": [{"name": n[:90], "ms_per_batch": round(v / reps / 1e3, 3),
                     "share_pct": round(100 * v / total, 1)} for n, v in top],
            "shares_pct": {k: round(100 * v / total, 1) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}}


# ------------------------------------------------------------------------------------ input pipeline

def our_pipeline(seconds, tree: str, device_name: str, bs: int, workers: int, img: int, cache: str | None) -> dict:
    """Decode + resize + crop in workers, to the device, no model (``cache``: read the filled decode cache).
    Steady state from the first W batches on (W = workers: every worker's first batch is start-up)."""
    import torch

    from senet_zoo.images.preprocess import Preprocessing
    from senet_zoo.validation.batches import BatchDataset, make_loader, start
    from senet_zoo.validation.cache import DecodeCache
    from senet_zoo.validation.data import load_eval_set

    device = torch.device(device_name)
    evalset = load_eval_set(tree)
    prep = Preprocessing("caffe", _resize(img), img)
    dc = DecodeCache.open(cache, evalset.reader, prep, log=lambda s: None) if cache else None
    if dc is not None and dc.stored_at_start < dc.n:
        return {"status": "skipped: the decode cache is not filled (the first validate run did not finish)"}
    ds = BatchDataset(evalset.reader, prep, bs, cache=dc)
    t0 = time.monotonic()
    loader = make_loader(ds, list(range(len(ds))), workers, device.type == "cuda")
    points, n = [], 0
    for _, images, _ in start(loader):
        images.to(device, non_blocking=True)
        _sync(device)
        n += images.shape[0]
        points.append((time.monotonic(), n))
    from gpu_check.budget import rates

    return {**rates(points, t0, time.monotonic(), max(1, workers) * bs), "workers": workers, "batch_size": bs}


def _resize(img: int) -> int:
    """The caffe protocol's resize for a crop: 256 at 224 (the registry's), else timm's rule (crop / 0.875)."""
    return 256 if img == 224 else int(img / 0.875)


def timm_e2e(seconds, name: str, tree: str, device_name: str, mode: str, bs: int, workers: int, img: int,
             tf32: bool) -> dict:
    """timm's validate.py loop: its loader (PIL, prefetcher), its model (``legacy_*``, random weights),
    inference_mode, AMP/channels_last as its flags would set them, top-1/top-5 per batch; cudnn.benchmark on
    (its default) and TF32 as given, through both of torch's APIs. Stops early after ``seconds``."""
    import timm
    import torch
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.utils import accuracy

    from validate import TIMM_NAMES  # benchmarks/validate.py
    from gpu_check.budget import rates
    from senet_zoo.validation.numerics import set_numerics

    device = torch.device(device_name)
    set_numerics("bf16" if tf32 else "fp32")  # TF32 on or off, both APIs consistent
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    t0 = time.monotonic()
    model = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
    channels_last = mode != "fp32"
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = getattr(torch, AMP[mode]) if AMP[mode] else None
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext
    cfg = resolve_data_config({"input_size": (3, img, img)}, model=model)
    ds = create_dataset("", root=tree, split="validation")
    loader = create_loader(ds, input_size=cfg["input_size"], batch_size=bs, use_prefetcher=True,
                           interpolation=cfg["interpolation"], mean=cfg["mean"], std=cfg["std"],
                           num_workers=workers, crop_pct=cfg["crop_pct"], crop_mode=cfg.get("crop_mode"),
                           pin_memory=device.type == "cuda", device=device)
    points, n = [], 0
    stop = time.monotonic() + seconds
    with torch.inference_mode():
        for x, target in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                output = model(x)
            acc1, _ = accuracy(output.detach(), target, topk=(1, 5))
            acc1.item()  # validate.py's AverageMeter update synchronises here
            n += x.shape[0]
            points.append((time.monotonic(), n))
            if time.monotonic() > stop:
                break
    return {**rates(points, t0, time.monotonic(), max(1, workers) * bs), "complete": n == len(ds),
            "workers": workers, "batch_size": bs, "tf32": tf32}


# ------------------------------------------------------------------------------ validate's records

def parse_validate(out_json: Path, warm_images: int):
    """A ``parse`` for ``Check.run``: the record's figures and the rates from the progress lines."""
    import json

    from gpu_check.budget import progress_points, rates

    def parse(rc: int, lines, started: float, ended: float) -> dict:
        if rc not in (0, 1) or not out_json.is_file():  # 1: NOT REPRODUCED, expected with random weights
            return {"status": f"error: validate exit {rc}"}
        r = json.loads(out_json.read_text())
        cache = r["data"].get("decode_cache") or {}
        return {"status": "ok", **rates(progress_points(lines), started, ended, warm_images, lagged=True),
                "loop_images_per_s": r["images_per_s"], "wall_time_s": r["wall_time_s"],
                "images": r["results"]["num_images"], "verdict": r.get("verdict"),
                "conv_rel_err": (r.get("numerics", {}).get("conv_probe") or {}).get("conv_rel_err"),
                "cache_reused": cache.get("reused"), "cache_stored_at_start": cache.get("stored_at_start"),
                "cache_resident": cache.get("resident"), "workers": r["run"]["workers"],
                "batch_size": r["run"]["batch_size"], "compiled": r["run"].get("compiled"), "record": str(out_json)}
    return parse


def parse_sweep(out_dir: Path):
    """A ``parse`` for the ``validate --all`` step: the sweep's wall time and, per setting, its record's."""
    import json

    def parse(rc: int, lines, started: float, ended: float) -> dict:
        summary = out_dir / "summary.json"
        if rc not in (0, 1) or not summary.is_file():
            return {"status": f"error: validate --all exit {rc}"}
        rows = json.loads(summary.read_text())
        per = []
        for row in rows:
            record = json.loads(Path(row["record"]).read_text()) if row.get("record") else {}
            cache = (record.get("data") or {}).get("decode_cache") or {}
            per.append({"model": row["model"], "img_size": row["img_size"], "wall_time_s": row.get("wall_time_s"),
                        "images": (record.get("results") or {}).get("num_images"),
                        "images_per_s": record.get("images_per_s"), "cache_reused": cache.get("reused"),
                        "cache_resident": cache.get("resident")})
        return {"status": "ok", "sweep_s": round(ended - started, 2), "settings": len(per), "per_setting": per,
                "images": per[0]["images"] if per else None}
    return parse
