"""The ImageNet evaluation of converted models: ``senet-zoo validate`` and ``torchrun -m senet_zoo.validation``.

* ``data``: the image list and its labels (flat folder + label file, or ImageFolder), always sorted-wnid;
* ``preprocess``: the release's Caffe preprocessing (OpenCV) and timm's PIL pipeline;
* ``evaluate``: batched (uint8 to the device), distributed (no padding duplicates) and resumable evaluation;
* ``distributed``: torchrun process group, round-robin fixed batches, all-gather of per-image results;
* ``runner``/``commands``: the ``validate`` command (arguments, numerics, record assembly);
* ``metrics``: top-k errors, Wilson intervals, ReaL accuracy;
* ``record``: the validation record and predictions file (``recompute_metrics`` for the Hub gate);
* ``demo``: the validation stage of ``senet-zoo demo`` (labels from OpenCV's Caffe runtime).

Importing this package is cheap (no torch, no cv2).
"""
from __future__ import annotations

__all__ = ["recompute_metrics", "main"]


def recompute_metrics(npz_path):
    """(top-1 error %, top-5 error %, N) from a predictions ``.npz``."""
    from .record import recompute_metrics as _recompute

    return _recompute(npz_path)


def main(argv: list[str] | None = None) -> int:
    """The ``validate`` command without the ``senet-zoo`` prefix (what ``python -m senet_zoo.validation`` and
    ``torchrun -m senet_zoo.validation`` run)."""
    import argparse
    import os
    import sys

    from ..errors import SenetZooError
    from .commands import DESCRIPTION, add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m senet_zoo.validation", description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(_entry="python -m senet_zoo.validation")
    args = parser.parse_args(argv)
    rank0 = int(os.environ.get("RANK", "0") or 0) == 0
    try:
        return int(run(args) or 0)
    except SenetZooError as e:
        if rank0:
            print(f"senet-zoo validate: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if rank0:
            print("senet-zoo validate: interrupted (continue with --resume)", file=sys.stderr)
        return 130
