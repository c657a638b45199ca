"""``push``, ``download``, ``list``, ``report``: the Hub end of the pipeline."""
from __future__ import annotations

import argparse
import sys

DEFAULT_RECORDS = "runs"


def _add_records(p: argparse.ArgumentParser) -> None:
    p.add_argument("--records", nargs="+", metavar="DIR", default=None,
                   help=f"folders searched (recursively) for validation records (default: {DEFAULT_RECORDS}/ "
                   "unless --record is given)")
    p.add_argument("--record", action="append", default=[], metavar="FILE",
                   help="a validation record (repeatable)")


def _records(args):
    from .records import find_records

    from pathlib import Path

    from ..errors import SenetZooError

    if args.records is not None:  # folders the user named must exist; the default runs/ may not yet
        for d in args.records:
            if not Path(d).exists():
                raise SenetZooError(d, "no such folder of validation records")
    dirs = args.records if args.records is not None else ([] if args.record else [DEFAULT_RECORDS])
    return find_records(dirs, args.record)


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def run_push(args) -> int:
    from .push import push

    result = push(args.model, args.weights, args.repo_id, _records(args), private=args.private,
                  dry_run=args.dry_run, force=args.force, reason=args.reason, progress=args.progress, log=print)
    if args.dry_run is None:
        print(result)  # the commit sha, last line
    return 0


def run_download(args) -> int:
    from ..weights.download import fetch_weights

    folder = fetch_weights(args.model, args.revision, cache_dir=args.cache_dir, log=_err)
    print(folder)
    return 0


def run_list(args) -> int:
    from .listing import format_table, rows

    print(format_table(rows(args.weights_root, _records(args))))
    return 0


def run_report(args) -> int:
    from .report import write_report

    write_report(_records(args), args.output, chart=args.chart, draw=not args.no_chart)
    return 0


def register(sub) -> None:
    p = sub.add_parser("push", help="publish validated weights on the Hugging Face Hub (one commit)",
                       description="Publish a converted folder on the Hub, only if a validation record of these "
                       "exact weights says REPRODUCED. Pushes model.safetensors, config.json (timm layout), a model "
                       "card and the validation evidence in one commit, and prints the commit sha.")
    p.add_argument("--model", required=True, metavar="NAME", help="registry name, e.g. senet154")
    p.add_argument("--weights", required=True, metavar="DIR", help="converted folder (senet-zoo convert --output)")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the Hub model repository to push to "
                   "(created if absent)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be pushed to DIR; upload nothing")
    p.add_argument("--force", action="store_true", help="push although the gate refuses (needs --reason)")
    p.add_argument("--reason", metavar="TEXT", help="why --force; written into the model card")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="huggingface_hub's upload bars (default: only when stderr is a terminal)")
    _add_records(p)
    p.set_defaults(func=run_push)

    p = sub.add_parser("download", help="download published weights, sha256-verified",
                       description="Download the Hub revision pinned in checkpoints.yaml, verify the sha256 of "
                       "model.safetensors, and print the local folder. Works offline (HF_HUB_OFFLINE=1) "
                       "from the cache.")
    p.add_argument("model", metavar="NAME", help="registry name, e.g. senet154")
    p.add_argument("--revision", metavar="SHA", help="another revision than the pinned one (verified against "
                   "the Hub's own sha256 only)")
    p.add_argument("--cache-dir", metavar="DIR", help="Hugging Face cache folder (default: HF_HUB_CACHE)")
    p.set_defaults(func=run_download)

    p = sub.add_parser("list", help="the seven models: release hash, converted, validated, published",
                       description="One row per registry model: the release file's sha256, the converted folder "
                       "under --weights-root, what sound validation records say (ImageNet reproductions apart "
                       "from reference-runtime agreement checks such as the demo's), and the pinned Hub "
                       "revision.")
    p.add_argument("--weights-root", default="out", metavar="DIR",
                   help="where converted folders live, as DIR/<model> (default: out)")
    _add_records(p)
    p.set_defaults(func=run_list)

    p = sub.add_parser("report", help="Markdown page + PNG chart of published against reproduced errors",
                       description="Write a Markdown page (and a PNG chart) of the newest sound validation "
                       "record per model, size, preprocessing and precision: ImageNet reproductions against "
                       "the published errors, and, apart, agreement checks against the reference runtime.")
    p.add_argument("--output", default="docs/results.md", metavar="FILE",
                   help="the Markdown page to write (default: docs/results.md)")
    p.add_argument("--chart", metavar="FILE", help="PNG path (default: OUTPUT with .png)")
    p.add_argument("--no-chart", action="store_true", help="Markdown only (matplotlib not needed)")
    _add_records(p)
    p.set_defaults(func=run_report)
