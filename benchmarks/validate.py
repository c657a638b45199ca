"""Validation throughput: our input pipeline and evaluation loop against timm's, on the same JPEG folder.

Both sides read the same generated ImageNet-like JPEG folder (an ImageFolder tree of wnid sub-folders; sizes
500x375, 375x500, 500x333, 333x500, 500x500 at quality 90, ~100 KB each, like ILSVRC2012 val) in the same run:

* input pipeline: decoded, resized, cropped batches delivered as normalised float32 on the device, no model.
  ours = ``senet_zoo.validation.evaluate``'s ``BatchDataset``/``make_loader`` (OpenCV decode + INTER_LINEAR,
  uint8 batches, normalisation on the device); timm = ``timm.data.create_dataset`` + ``create_loader`` with
  the model's resolved data config, prefetcher on, as timm's ``validate.py`` does (PIL decode + antialiased
  bilinear, ``fast_collate``, ``PrefetchLoader`` normalisation);
* end to end: the model on top. ours = what ``senet-zoo validate`` runs: the model as ``runner.prepare_model``
  makes it (BatchNorm folded into the convolutions, channels_last on the CPU and with AMP), validate's default
  workers, ``evaluate()``; timm = timm's ``validate.py`` loop on timm's own twin (``legacy_seresnet50``...:
  ``inference_mode``, optional AMP / channels_last, top-1/top-5 bookkeeping), with the same workers;
* ``--cache``: the real ``senet-zoo validate`` command in fresh processes without a cache, with a fresh
  ``--cache DIR`` (decodes and stores) and with the filled one (reads it), interleaved, same images, same
  top-5 asserted; and our input pipeline decoding vs reading a filled cache.

Input-pipeline images/s are steady-state (the clock starts when the first batch arrives, so worker start-up is
excluded on both sides); end-to-end images/s include it on both sides (from starting the workers to the last
result). Every figure is the median of ``--repeat`` runs, ours and timm's interleaved.

    .venv/bin/python benchmarks/validate.py                      # CPU, SE-ResNet-50, 1 and 2 workers
    .venv/bin/python benchmarks/validate.py --source tar wds parquet   # our input pipeline per source vs folder
    .venv/bin/python benchmarks/validate.py --cache --e2e-images 64     # validate's second --cache run vs first
    .venv/bin/python benchmarks/validate.py --device cuda --model senet154 --images 4000 \\
        --workers 8 --batch-size 128 --precision fp32 bf16 --e2e-images 4000   # see gpu_validate.sh
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = [(375, 500), (500, 375), (333, 500), (500, 333), (500, 500)]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668"]
# timm's twins of our architectures (same layers and names; timm's own preprocessing config)
TIMM_NAMES = {"se_resnet50": "legacy_seresnet50", "se_resnet101": "legacy_seresnet101",
              "se_resnet152": "legacy_seresnet152", "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
              "se_resnext101_32x4d": "legacy_seresnext101_32x4d", "senet154": "legacy_senet154"}


def make_images(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` ImageNet-sized JPEGs in an ImageFolder tree (kept if already there)."""
    import cv2

    marker = root / f".complete-{n}-{seed}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = SHAPES[i % len(SHAPES)]
        base = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        mid = cv2.resize(rng.normal(0, 30, (h // 6, w // 6, 3)).astype(np.float32), (w, h))
        img = np.clip(base + mid + rng.normal(0, 14, (h, w, 3)).astype(np.float32), 0, 255).astype(np.uint8)
        d = root / WNIDS[i % len(WNIDS)]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"img_{i:06d}.JPEG"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    marker.touch()
    return root


def write_weights(dest: Path, name: str) -> Path:
    """The architecture's seeded random initialisation as a converted folder (speed does not depend on the
    weights), kept if already there."""
    import torch
    from safetensors.torch import save_file

    import senet_zoo

    if not (dest / "model.safetensors").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = senet_zoo.create_model(name)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dest / "model.safetensors"),
                  metadata={"format": "pt", "model": name})
    return dest


def _steady(batches, consume) -> tuple[float, int]:
    """(images/s after the first batch, images)."""
    t0, n0, n = None, 0, 0
    for b in batches:
        k = consume(b)
        n += k
        if t0 is None:
            t0, n0 = time.perf_counter(), n
    elapsed = time.perf_counter() - t0
    return (n - n0) / elapsed if elapsed > 0 else float("nan"), n


# ---------------------------------------------------------------------------------------- pipelines

def ours_pipeline(root: Path, model, device, batch_size: int, workers: int, cache: Path | None = None):
    """With ``cache`` (a filled ``--cache`` folder): the stored crops are read instead of decoded."""
    import torch

    from senet_zoo.validation.cache import DecodeCache
    from senet_zoo.validation.data import load_eval_set
    from senet_zoo.validation.batches import BatchDataset, make_loader, start
    from senet_zoo.images.preprocess import Preprocessing

    cfg = model.pretrained_cfg
    evalset = load_eval_set(root)
    prep = Preprocessing("caffe", 256, 224)
    dc = DecodeCache.open(cache, evalset.reader, prep, log=lambda s: None) if cache is not None else None
    ds = BatchDataset(evalset.reader, prep, batch_size, cache=dc)
    loader = make_loader(ds, list(range(len(ds))), workers, device.type == "cuda")
    mean = torch.tensor(np.asarray(cfg["mean"]) * 255, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(np.asarray(cfg["std"]) * 255, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def consume(item):
        _, images, _ = item
        x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().contiguous().sub_(mean).div_(std)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return x.shape[0]

    return _steady(start(loader), consume)


def timm_loader(root: Path, model, device, batch_size: int, workers: int):
    from timm.data import create_dataset, create_loader, resolve_data_config

    cfg = resolve_data_config({}, model=model)
    ds = create_dataset("", root=str(root), split="validation")
    return create_loader(ds, input_size=cfg["input_size"], batch_size=batch_size, use_prefetcher=True,
                         interpolation=cfg["interpolation"], mean=cfg["mean"], std=cfg["std"],
                         num_workers=workers, crop_pct=cfg["crop_pct"], crop_mode=cfg.get("crop_mode"),
                         pin_memory=device.type == "cuda", device=device)


def timm_pipeline(root: Path, model, device, batch_size: int, workers: int):
    import torch

    loader = timm_loader(root, model, device, batch_size, workers)

    def consume(item):
        x, _ = item
        if device.type == "cuda":
            torch.cuda.synchronize()
        return x.shape[0]

    return _steady(loader, consume)


# ------------------------------------------------------------------------------------------- sources

def make_sources(root: Path, kinds: list[str]) -> dict[str, str]:
    """The generated tree in the other forms ``--data`` reads (kept beside it): what ``--source`` compares."""
    from senet_zoo import classes
    from senet_zoo.validation.sources.pack import write_parquet, write_shards, write_tar

    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.JPEG"))
    by_base = sorted(names, key=lambda n: n.rsplit("/", 1)[-1])  # the evaluation order of wds and parquet
    wnid = {w: i for i, w in enumerate(classes.sorted_wnids())}
    labels = [wnid[n.split("/")[0]] for n in by_base]
    out_dir = root.parent / f"{root.name}-sources"
    forms = {"folder": str(root)}
    if "tar" in kinds:
        forms["tar"] = str(out_dir / "val.tar")
        if not Path(forms["tar"]).exists():
            write_tar(root, names, Path(forms["tar"]))
    if "wds" in kinds:  # 64 shards for 50,000 images in timm/imagenet-1k-wds: ~780 per shard
        forms["wds"] = str(out_dir / "wds")
        if not Path(forms["wds"]).exists():
            write_shards(root, by_base, labels, Path(forms["wds"]), shards=max(1, len(names) // 100))
    if "parquet" in kinds:  # row groups of 100 rows, as the Hub's files
        forms["parquet"] = str(out_dir / "parquet")
        if not Path(forms["parquet"]).exists():
            write_parquet(root, by_base, labels, Path(forms["parquet"]), files=2)
    return forms


def compare_sources(args, root: Path, model, device, results: dict) -> None:
    """Our input pipeline on each source against the folder, interleaved in one run (medians of --repeat)."""
    os.environ.setdefault("XDG_CACHE_HOME", str(root.parent / "cache"))  # tar indexes (built before timing)
    forms = make_sources(root, [k for k in args.source if k != "folder"])
    from senet_zoo.validation.data import load_eval_set

    sets = {kind: load_eval_set(path) for kind, path in forms.items()}
    reads = {k: [] for k in forms}  # the reader alone (bytes of every image, one process), no decode
    for _ in range(args.repeat):
        for kind, s in sets.items():
            t0 = time.perf_counter()
            for i in range(len(s)):
                s.reader.read(i)
            reads[kind].append((time.perf_counter() - t0) / len(s) * 1e3)
    results["read_ms"] = {k: statistics.median(v) for k, v in reads.items()}
    print("read only, ms/image: " + ", ".join(f"{k} {v:.3f}" for k, v in results["read_ms"].items()), flush=True)
    results["sources"] = {}
    for w in args.workers:
        runs = {k: [] for k in forms}
        for _ in range(args.repeat):
            for kind, path in forms.items():
                runs[kind].append(ours_pipeline(path, model, device, args.batch_size, w)[0])
        med = {k: statistics.median(v) for k, v in runs.items()}
        results["sources"][w] = {k: {"median": med[k], "ratio": med[k] / med["folder"], "runs": runs[k]}
                                 for k in forms}
        for kind in forms:
            print(f"input pipeline, {w} worker(s), {kind:8s}: {med[kind]:8.1f} img/s   "
                  f"{med[kind] / med['folder']:.2f}x the folder", flush=True)


# ------------------------------------------------------------------------------------------ end to end

def ours_e2e(root: Path, name: str, device, batch_size: int, workers: int | None, precision: str):
    """What ``senet-zoo validate`` runs: the model prepared by ``runner.prepare_model`` (BatchNorm folded,
    channels_last on the CPU), its default workers unless given, then ``evaluate()``."""
    import senet_zoo
    from senet_zoo.validation import distributed
    from senet_zoo.validation.data import load_eval_set
    from senet_zoo.validation.evaluate import EvalOptions, evaluate
    from senet_zoo.images.preprocess import Preprocessing
    from senet_zoo.validation.numerics import set_numerics
    from senet_zoo.validation.runner import default_workers, prepare_model

    set_numerics(precision)
    model = senet_zoo.create_model(name)
    cfg = model.pretrained_cfg
    evalset = load_eval_set(root)
    model, channels_last, _, _ = prepare_model(model, device, precision)
    workers = default_workers(device) if workers is None else workers
    opts = EvalOptions(device=device, precision=precision, batch_size=batch_size, workers=workers,
                       channels_last=channels_last, show_progress=False)
    out = evaluate(model, evalset, Preprocessing("caffe", 256, 224), cfg["mean"], cfg["std"], opts,
                   distributed.Dist(), None, False, log=lambda s: None)
    return out.session_images / out.session_time_s, out.session_images


def timm_e2e(root: Path, name: str, device, batch_size: int, workers: int, precision: str):
    """timm validate.py's loop on timm's own model (its defaults on CUDA: TF32 and cudnn.benchmark on)."""
    import contextlib

    import timm
    import torch
    from timm.utils import accuracy

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False
    model = timm.create_model(TIMM_NAMES[name], pretrained=False).eval()
    loader = timm_loader(root, model, device, batch_size, workers)
    channels_last = device.type == "cuda" and precision != "fp32"
    m = model.to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=amp)) if amp else contextlib.nullcontext

    def consume(item):
        x, target = item
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            output = m(x)
        acc1, acc5 = accuracy(output.detach(), target, topk=(1, 5))
        acc1.item()  # validate.py's AverageMeter update syncs here
        return x.shape[0]

    with torch.inference_mode():
        t0 = time.perf_counter()  # as ours: from starting the workers to the last batch
        n = sum(consume(item) for item in loader)
    return n / (time.perf_counter() - t0), n


# -------------------------------------------------------------------------------------------- cache

def cli_validate(root: Path, weights: Path, name: str, device, batch_size: int, workers: int | None,
                 cache: Path | None, out_json: Path) -> dict:
    """The real ``senet-zoo validate`` command (``python -m senet_zoo.validation``) in a fresh process."""
    import subprocess

    cmd = [sys.executable, "-m", "senet_zoo.validation", "--model", name, "--weights", str(weights),
           "--data", str(root), "--device", device.type, "--batch-size", str(batch_size), "--no-progress",
           "--output", str(out_json)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    process_s = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: NOT REPRODUCED, expected with random weights
        raise RuntimeError(f"validate exit {proc.returncode}: {proc.stdout[-400:]}{proc.stderr[-400:]}")
    record = json.loads(out_json.read_text())
    dc = record["data"]["decode_cache"] or {}
    with np.load(out_json.parent / record["predictions"]["file"], allow_pickle=False) as z:
        top5 = hashlib.sha256(np.ascontiguousarray(z["top5"]).tobytes()).hexdigest()
    return {"images_per_s": record["images_per_s"], "loop_s": record["wall_time_s"], "process_s": process_s,
            "cache_reused": dc.get("reused"), "stored_at_start": dc.get("stored_at_start"),
            "top5_sha256": top5}


def compare_cache(args, root: Path, model, device, results: dict) -> None:
    """``validate`` without a cache, with a fresh ``--cache DIR`` (decodes and stores) and with the filled one
    (reads it), interleaved per repeat on the same images. The top-5 predictions must be identical in all
    three."""
    import shutil

    weights = write_weights(args.data / "weights" / args.model, args.model)
    cache = args.data / "decode-cache"
    bs = args.e2e_batch_size or args.batch_size
    runs = {"none": [], "first": [], "second": []}
    for r in range(args.repeat):
        shutil.rmtree(cache, ignore_errors=True)
        for kind in runs:
            runs[kind].append(cli_validate(root, weights, args.model, device, bs, args.e2e_workers,
                                           None if kind == "none" else cache, args.data / f"record-{kind}.json"))
            print(f"validate {kind:6s} cache, run {r + 1}: " + json.dumps(runs[kind][-1]), flush=True)
    sha = {x["top5_sha256"] for v in runs.values() for x in v}
    assert len(sha) == 1, f"predictions differ with and without the cache: {sha}"
    assert all(x["cache_reused"] and x["stored_at_start"] == len(list(root.rglob("*.JPEG")))
               for x in runs["second"]), "the second run did not read a full cache"
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("images_per_s", "loop_s", "process_s")}
           for k, v in runs.items()}
    results["cache"] = {"validate": med, "runs": runs, "batch_size": bs}
    for kind in runs:
        print(f"validate, {kind:6s} cache: {med[kind]['images_per_s']:7.2f} img/s, loop {med[kind]['loop_s']:6.2f} s, "
              f"process {med[kind]['process_s']:6.2f} s; second run's speed-up "
              f"{med['second']['images_per_s'] / med[kind]['images_per_s']:.2f}x", flush=True)


def compare_cache_pipeline(args, root: Path, model, device, results: dict) -> None:
    """Our input pipeline on the --images set: filling a fresh cache, then decoding vs reading it (steady
    state, interleaved, medians of --repeat)."""
    import shutil

    from senet_zoo.validation.runner import default_workers

    w = args.e2e_workers if args.e2e_workers is not None else default_workers(device)
    cache = args.data / "pipeline-cache"
    shutil.rmtree(cache, ignore_errors=True)
    fill = ours_pipeline(root, model, device, args.batch_size, w, cache)[0]
    pipe = {"decode": [], "cache": []}
    for _ in range(args.repeat):
        pipe["decode"].append(ours_pipeline(root, model, device, args.batch_size, w)[0])
        pipe["cache"].append(ours_pipeline(root, model, device, args.batch_size, w, cache)[0])
    pmed = {k: statistics.median(v) for k, v in pipe.items()}
    results["cache_pipeline"] = {**pmed, "filling": fill, "ratio": pmed["cache"] / pmed["decode"], "runs": pipe,
                                 "workers": w, "batch_size": args.batch_size}
    print(f"input pipeline, {w} worker(s), batch {args.batch_size}: filling the cache {fill:8.1f} img/s   decoding "
          f"{pmed['decode']:8.1f} img/s   from the cache {pmed['cache']:8.1f} img/s   "
          f"ratio {pmed['cache'] / pmed['decode']:.2f}x", flush=True)


# ----------------------------------------------------------------------------------------------- main

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="image folder to use/create (default: a temporary one)")
    p.add_argument("--images", type=int, default=400, help="generated images (input pipeline)")
    p.add_argument("--e2e-images", type=int, default=96, help="images for the end-to-end runs")
    p.add_argument("--model", default="se_resnet50")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--e2e-batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="input-pipeline runs")
    p.add_argument("--e2e-workers", type=int, default=None,
                   help="end to end (both sides): default validate's own default for the device")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--cache", nargs="*", choices=["validate", "pipeline"],
                   help="instead of the timm comparison (both when none named): validate without / with a first / "
                        "with a second --cache run on the --e2e-images; the input pipeline on the --images "
                        "decoding vs reading the cache")
    p.add_argument("--source", nargs="+", choices=["folder", "tar", "wds", "parquet"],
                   help="instead of the timm comparison: our input pipeline on these sources vs the folder")
    args = p.parse_args()

    import cv2
    import torch

    import senet_zoo

    device = torch.device(args.device)
    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="senet-zoo-bench-")
        args.data = Path(tmp.name)
    root = make_images(args.data / f"pipeline-{args.images}", args.images)
    e2e_root = make_images(args.data / f"e2e-{args.e2e_images}", args.e2e_images, seed=1)
    sizes = [f.stat().st_size for f in root.rglob("*.JPEG")]
    model = senet_zoo.create_model(args.model)  # architecture only: throughput does not depend on weights
    info = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(),
            "torch": torch.__version__, "opencv": cv2.__version__, "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "images": len(sizes), "mean_jpeg_kb": round(sum(sizes) / len(sizes) / 1e3, 1), "model": args.model,
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(json.dumps(info))
    results = {"info": info, "pipeline": {}, "e2e": {}}
    if args.source:
        compare_sources(args, root, model, device, results)
        args.workers, args.skip_e2e = [], True
    if args.cache is not None:
        wanted = set(args.cache) or {"validate", "pipeline"}
        if "validate" in wanted:
            compare_cache(args, e2e_root, model, device, results)
        if "pipeline" in wanted:
            compare_cache_pipeline(args, root, model, device, results)
        args.workers, args.skip_e2e = [], True

    for w in args.workers:
        runs = {"ours": [], "timm": []}
        for _ in range(args.repeat):
            runs["ours"].append(ours_pipeline(root, model, device, args.batch_size, w)[0])
            runs["timm"].append(timm_pipeline(root, model, device, args.batch_size, w)[0])
        med = {k: statistics.median(v) for k, v in runs.items()}
        results["pipeline"][w] = {**med, "ratio": med["ours"] / med["timm"], "runs": runs}
        print(f"input pipeline, {w} worker(s): ours {med['ours']:8.1f} img/s   timm {med['timm']:8.1f} img/s   "
              f"ratio {med['ours'] / med['timm']:.2f}x", flush=True)

    if not args.skip_e2e:
        from senet_zoo.validation.runner import default_workers

        w = args.e2e_workers if args.e2e_workers is not None else default_workers(device)
        bs = args.e2e_batch_size or args.batch_size
        for prec in args.precision:
            runs = {"ours": [], "timm": []}
            for _ in range(args.repeat):
                runs["ours"].append(ours_e2e(e2e_root, args.model, device, bs, w, prec)[0])
                runs["timm"].append(timm_e2e(e2e_root, args.model, device, bs, w, prec)[0])
            med = {k: statistics.median(v) for k, v in runs.items()}
            results["e2e"][prec] = {**med, "ratio": med["ours"] / med["timm"], "runs": runs, "workers": w,
                                    "batch_size": bs}
            print(f"end to end {args.model} {prec}, {w} workers, batch {bs}: ours {med['ours']:8.2f} img/s   "
                  f"timm {med['timm']:8.2f} img/s   ratio {med['ours'] / med['timm']:.2f}x", flush=True)
    info["load_avg_end"] = os.getloadavg()
    print(json.dumps({"load_avg_end": info["load_avg_end"]}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
