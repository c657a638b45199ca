"""``senet-zoo``: one entry point, one sub-command module per stage of the pipeline.

Each command module exposes ``register(subparsers)`` and keeps its heavy imports (torch, cv2) inside the
function that runs the command, so ``senet-zoo --help`` stays instant.

Every command speaks with one voice: a bad argument, whichever command and whichever check finds it
(argparse itself, a model name that is not in the registry, a ``SenetZooError`` raised later), is one line
``senet-zoo COMMAND: error: ...`` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import signal
import sys

from .version import __version__
from .errors import SenetZooError

# Data flows one way: Caffe files -> PyTorch -> validation -> Hub; the help lists commands in that order.
COMMAND_MODULES = (
    "senet_zoo.converters.commands",   # convert, verify, info
    "senet_zoo.timm_weights.commands", # compare (with timm's legacy_se* port of the same caffemodels)
    "senet_zoo.validation.commands",   # validate
    "senet_zoo.hub.commands",          # push, download, list, report
    "senet_zoo.demo",                  # demo
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse's own prints the whole usage block first, which
    buries the message when a command has many options)."""

    def error(self, message: str):  # noqa: D102 (argparse's hook)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def unknown_model_message(name: str, known: list[str]) -> str:
    """``unknown model 'x'``, with the nearest registry name when one is close enough to be a typo."""
    # A prefix ("se_resnext5"), or a display name ("SE-ResNet-50") once case and separators are folded,
    # says more than edit distance, which would offer se_resnet50 for se_resnext5.
    folded = name.lower().replace("-", "").replace("_", "")
    near = [k for k in known if folded and k.replace("_", "").startswith(folded)][:1]
    near = near or difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else ""
    return f"unknown model '{name}'{hint} (known: {', '.join(known)})"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="senet-zoo",
        description="Convert the Caffe release of Squeeze-and-Excitation Networks to PyTorch, "
        "prove it exact, and re-run the published ImageNet evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"senet-zoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def _check_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every command's model name is checked here, before the command starts, so that all of them answer a
    misspelt name alike."""
    name = getattr(args, "model", None)
    if not isinstance(name, str):
        return
    from . import registry

    known = registry.names()
    if name not in known:
        parser.error(unknown_model_message(name, known))


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args, extra = parser.parse_known_args(argv)
    command = getattr(args, "command", None)
    # argparse reports a sub-command's unknown options as the top-level parser's; name the command instead
    command_parser = _subparser(parser, command) if command else parser
    if extra:
        command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if command:
        _check_model(command_parser, args)
    return args


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
    try:
        args = _parse(parser, argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed in one line
        return e.code if isinstance(e.code, int) else 2
    except SenetZooError as e:  # the registry itself (SENET_ZOO_REGISTRY) is unreadable
        print(f"senet-zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
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
