"""``senet-zoo convert``, ``verify`` and ``info``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import registry
from ..errors import SenetZooError


# The smallest crop every architecture can run (five stride-2 stages); the largest keeps `info` in memory.
MIN_IMG_SIZE, MAX_IMG_SIZE = 32, 1024


def img_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if not MIN_IMG_SIZE <= value <= MAX_IMG_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is outside {MIN_IMG_SIZE}..{MAX_IMG_SIZE} (the networks "
                                         f"downsample by 32)")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    model_help = "registry name, e.g. se_resnet50 (senet-zoo list shows all seven)"

    p = sub.add_parser("convert", help="convert release caffemodels to model.safetensors + config.json",
                       description="Read the release's .caffemodel (binary or HDF5) and write model.safetensors "
                       "and config.json, without Caffe.")
    p.add_argument("--model", metavar="NAME", help=model_help)
    p.add_argument("--caffemodel", type=Path, metavar="FILE", help="the release's .caffemodel or .caffemodel.h5")
    p.add_argument("--prototxt", type=Path, metavar="FILE", help="deploy prototxt, checked against the "
                   "architecture (default: the release's file name beside the caffemodel, if present)")
    p.add_argument("--output", type=Path, metavar="DIR", help="output folder (default: out/MODEL)")
    p.add_argument("--all", action="store_true", help="convert every model whose release files are in --release-dir")
    p.add_argument("--release-dir", type=Path, metavar="DIR", help="folder with the release's files (for --all)")
    p.add_argument("--output-root", type=Path, default=Path("out"), metavar="DIR",
                   help="parent of the output folders for --all (default: out)")
    p.add_argument("--allow-unknown-hash", action="store_true",
                   help="convert a caffemodel whose sha256 is not the released file's")
    p.add_argument("--verify", action="store_true", help="then compare with OpenCV's Caffe runtime (see verify)")
    _verify_inputs(p)
    p.set_defaults(func=run_convert)

    p = sub.add_parser("verify", help="compare converted weights with OpenCV's Caffe runtime",
                       description="Run the converted model and an independent Caffe runtime (OpenCV dnn, with "
                       "its Axpy fault corrected) on the same inputs; exit 1 when they differ beyond tolerance.")
    p.add_argument("--model", required=True, metavar="NAME", help=model_help)
    p.add_argument("--caffemodel", type=Path, required=True, metavar="FILE",
                   help="the caffemodel the weights were converted from")
    p.add_argument("--weights", type=Path, required=True, metavar="PATH",
                   help="converted folder (or model.safetensors)")
    p.add_argument("--prototxt", type=Path, metavar="FILE", help="deploy prototxt (default: beside the "
                   "caffemodel, else the release layout written by senet-zoo)")
    _verify_inputs(p)
    p.set_defaults(func=run_verify)

    p = sub.add_parser("info", help="parameters and multiply-add GFLOPs beside the paper's figures",
                       description="Count a model's parameters and multiply-adds (the paper's GFLOPs: "
                       "convolutions and fully connected layers) and print them beside the paper's figures.")
    p.add_argument("model", metavar="NAME", help=model_help)
    p.add_argument("--img-size", type=img_size, default=224, metavar="N",
                   help=f"square input size in pixels, {MIN_IMG_SIZE}..{MAX_IMG_SIZE} (default: 224)")
    p.set_defaults(func=run_info)


def _verify_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", type=Path, metavar="DIR", help="folder of images to compare on, under Caffe "
                   "preprocessing (default: generated images)")
    p.add_argument("--num-images", type=positive_int, default=8, metavar="N", help="how many images (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the generated images (default 0)")
    p.add_argument("--max-image-pixels", type=positive_int, metavar="N",
                   help="--images larger than N pixels (or their resize) are refused (default: 89478485, Pillow's)")


def run_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    if args.all:
        return _convert_all(args)
    if not args.model or not args.caffemodel:
        raise SenetZooError(None, "convert needs --model and --caffemodel (or --all --release-dir DIR)")
    output = args.output or Path("out") / args.model
    result = convert(args.model, args.caffemodel, output, args.prototxt, args.allow_unknown_hash, log=print)
    print(f"wrote {output}/model.safetensors ({result.num_parameters:,} parameters) and config.json")
    if args.verify:
        return _verify(args.model, args.caffemodel, output, args.prototxt, args)
    return 0


def _convert_all(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .convert import convert

    if args.release_dir is None:
        raise SenetZooError(None, "--all needs --release-dir DIR, a folder with the release's files")
    if not args.release_dir.is_dir():
        raise SenetZooError(args.release_dir, "no such folder (--release-dir: the release's files)")
    found = []
    for name in registry.names():
        ckpt = registry.get(name)
        for candidate in (ckpt.caffemodel, ckpt.caffemodel + ".h5", ckpt.caffemodel.replace(".caffemodel", ".h5")):
            if (args.release_dir / candidate).is_file():
                found.append((name, args.release_dir / candidate))
                break
    if not found:
        raise SenetZooError(args.release_dir, "contains none of the release's caffemodels "
                            f"({', '.join(registry.get(n).caffemodel for n in registry.names())})")
    status = 0
    # A bar only on a terminal: redirected stderr would collect its carriage-return redraws.
    for name, caffemodel in tqdm(found, desc="convert", unit="model", disable=not sys.stderr.isatty()):
        output = args.output_root / name
        result = convert(name, caffemodel, output, None, args.allow_unknown_hash)
        tqdm.write(f"{name}: {output} ({result.num_parameters:,} parameters)")
        if args.verify:
            status |= _verify(name, caffemodel, output, None, args)
    return status


def run_verify(args: argparse.Namespace) -> int:
    return _verify(args.model, args.caffemodel, args.weights, args.prototxt, args)


def _verify(name: str, caffemodel: Path, weights: Path, prototxt: Path | None, args: argparse.Namespace) -> int:
    import tempfile

    from ..images.preprocess import set_max_image_pixels

    set_max_image_pixels(getattr(args, "max_image_pixels", None))

    from .. import create_model
    from .convert import find_prototxt
    from .opencv_reference import OpenCVCaffeNet
    from .verify import binary_caffemodel_for_opencv, compare, generated_images, load_images

    ckpt = registry.get(name)
    if not Path(caffemodel).is_file():
        raise SenetZooError(caffemodel, "no such file")
    model = create_model(name, pretrained=weights)
    if args.images:
        images, names = load_images(args.images, args.num_images)
        print(f"inputs: {len(names)} images from {args.images} (resize 256, centre crop 224)")
    else:
        images = generated_images(args.num_images, args.seed)
        print(f"inputs: {len(images)} generated images (seed {args.seed})")
    with tempfile.TemporaryDirectory() as tmp:
        prototxt = prototxt or find_prototxt(ckpt, Path(caffemodel))
        if prototxt is None:
            from .release_layout import write_release_prototxt

            prototxt = write_release_prototxt(ckpt.architecture, Path(tmp) / ckpt.prototxt)
            print(f"reference topology: the release layout of {ckpt.display_name} (no prototxt given)")
        reference = OpenCVCaffeNet(prototxt, binary_caffemodel_for_opencv(prototxt, caffemodel, Path(tmp)))
        agreement = compare(model, reference, images)
    verdict = "EQUAL" if agreement.ok else "DIFFERENT"
    print(f"{ckpt.display_name} vs OpenCV's Caffe runtime: {agreement.summary()} -> {verdict}")
    return 0 if agreement.ok else 1


def run_info(args: argparse.Namespace) -> int:
    from ..models.complexity import complexity

    ckpt = registry.get(args.model)
    c = complexity(args.model, args.img_size)
    paper = ckpt.published.get("paper")
    print(f"{ckpt.display_name}")
    print(f"  parameters        {c.parameters:,} ({c.parameters / 1e6:.2f} M)")
    print(f"  multiply-adds     {c.gmacs:.2f} G at {args.img_size}x{args.img_size} (torch.utils.flop_counter FLOPs / 2)")
    if paper and paper.gflops and args.img_size == 224:
        print(f"  paper             {paper.gflops:.2f} GFLOPs (multiply-adds), {paper.source}")
    if args.model == "se_resnet50":
        print(f"  vs ResNet-50      +{(c.parameters - c.baseline_parameters) / 1e6:.2f} M parameters over "
              f"{c.baseline_parameters / 1e6:.2f} M (paper: ~2.5 M over ~25 M); "
              f"{c.baseline_gmacs:.2f} G multiply-adds without SE (paper: 3.86)")
    return 0
