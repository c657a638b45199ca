"""``--amp bf16``: the folded model cast to bf16 once, against autocast (which re-casts every weight on every
batch): agreement with exact fp32 and with each other, and time per image, interleaved in one run.

    .venv/bin/python benchmarks/amp_cast.py [--model se_resnet50] [--images 64] [--batch-size 16] [--repeat 3]

The weights are the seeded synthetic release of ``--model`` converted by ``convert`` (calibrated like the
tests' stand-in, so activations have realistic scales and predictions are not constant); the images are
generated ImageNet-sized JPEGs (``validate.py``'s), preprocessed at 224 by the Caffe pipeline. All three
modes run the model as ``validate`` prepares it (BatchNorm folded, channels_last on the CPU) on the same uint8
batches, normalised as ``evaluate`` does:

* fp32: exact, the reference;
* autocast: ``torch.autocast(bf16)`` around the fp32 model (``validate --amp bf16`` before);
* cast once: the folded model's parameters cast to bf16 once, the normalised input cast to bf16.

Reported: top-1 agreement and top-5 set agreement with fp32, and the logits' deviation from fp32 as max and
mean |logit - logit_fp32| / std(logits_fp32), for autocast and cast-once; the same between the two bf16
modes; and seconds per image of each bf16 mode, the median of ``--repeat`` interleaved passes.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_weights(folder: Path, name: str) -> Path:
    from senet_zoo import registry
    from senet_zoo.converters import caffe_io
    from senet_zoo.converters.convert import convert
    from senet_zoo.converters.release_layout import write_release_prototxt
    from senet_zoo.converters.synthetic import synthesize

    ckpt = registry.get(name)
    prototxt = write_release_prototxt(ckpt.architecture, folder / ckpt.prototxt)
    caffe_io.write_caffemodel(synthesize(caffe_io.read_prototxt(prototxt), seed=3), folder / ckpt.caffemodel)
    convert(name, folder / ckpt.caffemodel, folder / "out", prototxt, allow_unknown_hash=True)
    return folder / "out"


def crops(root: Path, n: int, size: int) -> np.ndarray:
    from validate import make_images  # benchmarks/validate.py: the generated ImageNet-sized JPEGs

    from senet_zoo.images.preprocess import Preprocessing

    make_images(root, n)
    prep = Preprocessing("caffe", 256 if size == 224 else int(size / 0.875), size)
    files = sorted(root.rglob("*.JPEG"))[:n]
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        prep.decode_rgb(f.read_bytes(), out[i])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="se_resnet50")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from senet_zoo import create_model
    from senet_zoo.validation.evaluate import EvalOptions, forward_fn
    from senet_zoo.validation.runner import prepare_model

    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = synthetic_weights(tmp, args.model)
        images = torch.from_numpy(crops(tmp / "jpegs", args.images, args.img_size))
        base = create_model(args.model, pretrained=str(weights))
    mean, std = base.pretrained_cfg["mean"], base.pretrained_cfg["std"]
    fp32_model, cl, _, _ = prepare_model(copy.deepcopy(base), cpu, "fp32")
    amp_model, _, _, _ = prepare_model(copy.deepcopy(base), cpu, "fp32", channels_last=cl)  # autocast's fp32 model
    cast_model, _, _, _ = prepare_model(copy.deepcopy(base), cpu, "bf16")  # as validate --amp bf16 runs it
    assert next(amp_model.parameters()).dtype == torch.float32 and next(cast_model.parameters()).dtype == torch.bfloat16
    modes = {
        "fp32": forward_fn(fp32_model, mean, std, EvalOptions(device=cpu, precision="fp32", channels_last=cl)),
        "autocast": forward_fn(amp_model, mean, std, EvalOptions(device=cpu, precision="bf16", channels_last=cl)),
        "cast once": forward_fn(cast_model, mean, std, EvalOptions(device=cpu, precision="bf16", channels_last=cl)),
    }
    logits = {m: [] for m in modes}
    seconds = {m: [] for m in modes if m != "fp32"}
    with torch.inference_mode():
        for m, fwd in modes.items():  # the numbers, and a warm-up of each mode
            for i in range(0, len(images), args.batch_size):
                logits[m].append(fwd(images[i:i + args.batch_size]).numpy())
        for _ in range(args.repeat):  # the times: the two bf16 modes interleaved, pass by pass
            for m in seconds:
                t0 = time.perf_counter()
                for i in range(0, len(images), args.batch_size):
                    modes[m](images[i:i + args.batch_size])
                seconds[m].append((time.perf_counter() - t0) / len(images))
    logits = {m: np.concatenate(v).astype(np.float64) for m, v in logits.items()}

    def compare(a: str, b: str) -> dict:
        la, lb = logits[a], logits[b]
        scale = lb.std()
        top5a, top5b = np.argsort(-la, 1)[:, :5], np.argsort(-lb, 1)[:, :5]
        return {"top1_agreement_pct": 100.0 * float((top5a[:, 0] == top5b[:, 0]).mean()),
                "top5_set_agreement_pct": 100.0 * float(np.mean([set(x) == set(y) for x, y in zip(top5a, top5b)])),
                "max_dev": float(np.abs(la - lb).max() / scale), "mean_dev": float(np.abs(la - lb).mean() / scale)}

    result = {"model": args.model, "images": len(images), "batch_size": args.batch_size, "img_size": args.img_size,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or
              platform.machine(),
              "autocast_vs_fp32": compare("autocast", "fp32"), "cast_once_vs_fp32": compare("cast once", "fp32"),
              "cast_once_vs_autocast": compare("cast once", "autocast"),
              "s_per_image": {m: statistics.median(v) for m, v in seconds.items()},
              "s_per_image_runs": seconds}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
