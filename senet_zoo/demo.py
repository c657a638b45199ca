"""``senet-zoo demo``: the whole pipeline on a seeded stand-in for the SE-ResNet-50 download.

The trained caffemodels (Apache-2.0, like the code) are large downloads from the release's own links and
are not shipped with senet-zoo, so the demo writes a release-format
SE-ResNet-50 (the official topology and layer names, seeded synthetic weights in Caffe's blob layout),
then runs exactly what a user runs on the real files: convert, verify against OpenCV's Caffe runtime,
validate on a small JPEG set, and stage the Hub folder (dry run) that timm loads back.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

MODEL = "se_resnet50"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a seeded stand-in for SE-ResNet-50",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--work-dir", type=Path, default=Path("demo-out"), help="where to write (default: demo-out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stand-in's synthetic weights and images "
                   "(default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import registry
    from .converters import caffe_io
    from .converters.convert import convert
    from .converters.opencv_reference import OpenCVCaffeNet
    from .converters.release_layout import write_release_prototxt
    from .converters.synthetic import synthesize
    from .converters.verify import compare, generated_images
    from .models.factory import create_model

    ckpt = registry.get(MODEL)
    work = args.work_dir
    release = work / "release"
    started = time.perf_counter()

    def step(n: int, text: str) -> None:
        print(f"\n[{n}/5] {text}  (+{time.perf_counter() - started:.1f}s)", flush=True)

    step(1, f"release files: {ckpt.display_name} in the official topology, seeded synthetic weights")
    prototxt = write_release_prototxt(ckpt.architecture, release / ckpt.prototxt)
    net = synthesize(caffe_io.read_prototxt(prototxt), seed=args.seed)
    caffemodel = release / ckpt.caffemodel
    caffe_io.write_caffemodel(net, caffemodel)
    print(f"  {prototxt}\n  {caffemodel} ({caffemodel.stat().st_size / 1e6:.1f} MB, "
          f"{len(net.param_layers())} parameter layers)")

    step(2, "convert (no Caffe): caffemodel -> model.safetensors + config.json")
    weights = work / "out" / MODEL
    result = convert(MODEL, caffemodel, weights, prototxt, allow_unknown_hash=True, log=lambda s: print("  " + s))
    print(f"  the stand-in is not the released file (sha256 {ckpt.caffemodel_sha256[:12]}…), hence "
          "--allow-unknown-hash")
    print(f"  wrote {weights}/model.safetensors ({result.num_parameters:,} parameters) and config.json")

    step(3, "verify: converted PyTorch model vs OpenCV's Caffe runtime (Axpy corrected, Winograd off)")
    agreement = compare(create_model(MODEL, pretrained=weights), OpenCVCaffeNet(prototxt, caffemodel),
                        generated_images(8, seed=args.seed))
    print(f"  {agreement.summary()} -> {'EQUAL' if agreement.ok else 'DIFFERENT'}")
    if not agreement.ok:
        return 1

    step(4, "validate: a generated JPEG set labelled by OpenCV's Caffe runtime, Caffe preprocessing")
    from .validation.demo import run_demo_validation

    record = run_demo_validation(work / "validation", weights, prototxt, caffemodel, log=lambda s: print("  " + s))

    step(5, "stage the Hub folder (dry run: nothing is uploaded) and load it back through timm")
    from .hub.demo import run_demo_hub

    staged = run_demo_hub(work / "hub", weights, [record], log=lambda s: print("  " + s))

    print(f"\ndone in {time.perf_counter() - started:.1f}s")
    print(f"  release files  {release}\n  converted      {weights}\n  record         {record}\n"
          f"  hub folder     {staged}")
    return 0
