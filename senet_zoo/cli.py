"""``senet-zoo``: one entry point, one sub-command module per stage of the pipeline.

Each command module exposes ``register(subparsers)`` and keeps its heavy imports (torch, cv2) inside the
function that runs the command, so ``senet-zoo --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys

from . import __version__
from .errors import SenetZooError

# Data flows one way: Caffe files -> PyTorch -> validation -> Hub; the help lists commands in that order.
COMMAND_MODULES = (
    "senet_zoo.converters.commands",   # convert, verify, info
    "senet_zoo.validation.commands",   # validate
    "senet_zoo.hub.commands",          # push, download, list, report
    "senet_zoo.demo",                  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="senet-zoo",
        description="Convert the Caffe release of Squeeze-and-Excitation Networks to PyTorch, "
        "prove it exact, and re-run the published ImageNet evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"senet-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, ``timeout``, ``docker stop``), raised where Ctrl-C would be, so that
    everything that cleans up or saves progress on an interruption does so for SIGTERM too."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (e.g. called from a test runner's thread): leave signals alone
        previous = None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SenetZooError as e:
        print(f"senet-zoo {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"senet-zoo {args.command}: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return 128 + signal.SIGTERM if terminated else 130


if __name__ == "__main__":
    sys.exit(main())
