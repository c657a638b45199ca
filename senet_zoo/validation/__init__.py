"""The ImageNet evaluation of converted models: ``senet-zoo validate`` and ``torchrun -m senet_zoo.validation``.

Top to bottom (each imports only from below; ``pyproject.toml``'s import-linter contract):

* ``demo``: the validation stage of ``senet-zoo demo`` (labels from OpenCV's Caffe runtime);
* ``commands``: the ``validate`` arguments, dispatched to ``sweep`` (``--all``) or ``runner`` (one run);
* ``sweep``: every converted model at every registry setting; ``runner``: one model at one setting;
* ``session``: what every run sets up first; ``cache``: decoded crops kept across runs; ``record``: the
  validation record and predictions file (``recompute_metrics`` for the Hub gate), ``metrics``: top-k
  errors, Wilson intervals, ReaL;
* ``evaluate``: the batched, distributed, resumable loop; ``progress``: its ``--resume`` file; ``resident``:
  a filled cache's crops as the loop's batches (device memory on CUDA);
  ``numerics``: exact mode's checks; ``distributed``: torchrun process group and gathers;
* ``batches``: uint8 batches from DataLoader workers; ``data``: the evaluation set (names, labels, subset);
* ``labels``: label files and cross-checks; ``sources``: one reader per way users hold the images.

Below this package: ``converters`` (the demo's reference runtime), ``models``, ``images`` (the Caffe image
pipeline), ``weights`` (default weights: the verified Hub download) and the base modules. Importing this
package is cheap (no torch, no cv2).
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
