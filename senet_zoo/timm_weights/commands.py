"""``senet-zoo compare MODEL --timm-weights FILE_OR_HUB_ID [--weights OUR_FOLDER]``: how timm's ``legacy_se*``
weights relate to this conversion, tensor by tensor (``relation.py``). Exit 0 when every tensor is this
conversion's (up to the input fold, BatchNorm folding or rounding), 1 when some are not, 2 on bad input."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTION = (
    "Compare timm's legacy_se* checkpoint of a model (a .safetensors or torch.save file, read without "
    "unpickling, a folder holding one, or a Hub id such as timm/legacy_seresnet50.in1k) with this conversion "
    "(--weights, default: the verified Hub download), tensor by tensor: identical, equal to rounding, equal up "
    "to the input fold (conv1 channel order and scale, the mean folded into its BatchNorm), BatchNorm folding, "
    "or different (with the largest absolute difference). Exit 0 when every tensor is this conversion's, 1 "
    "when some are not, 2 on bad input."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="how timm's legacy_se* weights differ from this conversion, tensor by tensor",
                       description=DESCRIPTION)
    p.add_argument("model", metavar="MODEL", help="registry name, e.g. se_resnet50 (timm: legacy_seresnet50)")
    p.add_argument("--timm-weights", required=True, metavar="FILE_OR_HUB_ID",
                   help="timm's checkpoint: a .safetensors / .pth / .bin file, a folder with one, or a Hub model "
                        "id (hf-hub:)ORG/NAME[@REVISION], e.g. timm/legacy_seresnet50.in1k")
    p.add_argument("--weights", type=Path, metavar="PATH",
                   help="this conversion: a converted folder or its model.safetensors (default: the verified "
                        "Hub download)")
    p.add_argument("--every-tensor", action="store_true",
                   help="list identical tensors and BatchNorm counters too (default: only the others)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write every tensor's relation as JSON")
    p.set_defaults(func=run, _entry="senet-zoo compare")


def _our_state(name: str, weights: Path | None):
    from ..errors import SenetZooError
    from ..files import sha256_file
    from ..weights.download import fetch_weights
    from ..weights.folder import read_safetensors_header, read_weights, resolve_weights
    from .checkpoint import read_safetensors

    folder = Path(weights) if weights is not None else fetch_weights(name)
    file, _ = resolve_weights(folder)
    if folder.is_dir():
        read_weights(folder, name)             # a complete conversion of this model
    else:
        metadata, _ = read_safetensors_header(file)
        if metadata.get("model") != name:
            raise SenetZooError(file, f"holds weights of {metadata.get('model')!r}, not {name!r}")
    return read_safetensors(file), file, sha256_file(file)


def fmt(values) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in values) + ")"


def _table(rows, every: bool) -> list[str]:
    # identical tensors and BatchNorm counters are counted in the summary, listed only with --every-tensor
    shown = [r for r in rows if every or r.relation not in ("identical", "counter")]
    if not shown:
        return []
    width = max(len(r.name) for r in shown)
    lines = [f"{'TENSOR':<{width}}  {'RELATION':<14}  {'MAX |DIFF|':>10}  DETAIL"]
    for r in shown:
        diff = "–" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
        lines.append(f"{r.name:<{width}}  {r.relation:<14}  {diff:>10}  {r.detail}".rstrip())
    return lines


def run(args: argparse.Namespace) -> int:
    from .. import registry
    from ..errors import SenetZooError
    from ..files import atomic_write_text
    from ..models.config import RGB_MEAN, STD, pretrained_cfg
    from .checkpoint import open_checkpoint
    from .model import STEM_BN
    from .relation import DIFFERENT, EXTRA, MISSING, compare

    reg = registry.get(args.model)
    if reg.timm_architecture is None:
        raise SenetZooError(None, f"{args.model}: timm has no {reg.display_name} (no legacy_se* twin) to compare with")
    theirs = open_checkpoint(args.timm_weights)
    ours, our_file, our_sha = _our_state(args.model, args.weights)
    first_conv = pretrained_cfg(reg)["first_conv"]
    cmp = compare(ours, theirs.state, first_conv=first_conv, first_bn=STEM_BN[first_conv], ours_mean=RGB_MEAN,
                  ours_std=STD, theirs_mean=theirs.mean, theirs_std=theirs.std)
    print(f"{reg.display_name} ({reg.timm_architecture})")
    print(f"  timm's checkpoint: {theirs.source} ({theirs.file.name}, sha256 {theirs.sha256[:16]}…), used with "
          f"mean {fmt(theirs.mean)} std {fmt(theirs.std)} ({theirs.normalisation_from})")
    print(f"  this conversion:   {our_file} (sha256 {our_sha[:16]}…), used with mean {fmt(RGB_MEAN)} std {fmt(STD)}")
    print()
    for line in _table(cmp.rows, args.every_tensor):
        print(line)
    counts = cmp.counts()
    print()
    print("tensors: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    if counts.get("counter"):
        print(f"  counter: {counts['counter']} num_batches_tracked absent or different (a training counter, no "
              "effect in eval; 2018 checkpoints predate it)")
    for note in cmp.notes:
        print(f"note: {note}")
    print(cmp.verdict())
    if args.json is not None:
        doc = {"model": args.model, "timm_weights": {"source": theirs.source, "file": str(theirs.file),
                                                     "sha256": theirs.sha256, "mean": theirs.mean, "std": theirs.std,
                                                     "normalisation_from": theirs.normalisation_from},
               "weights": {"file": str(our_file), "sha256": our_sha},
               "fold": None if cmp.fold is None else vars(cmp.fold), "counts": counts, "verdict": cmp.verdict(),
               "tensors": [vars(r) for r in cmp.rows]}
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
    return 1 if any(r.relation in (DIFFERENT, MISSING, EXTRA) for r in cmp.rows) else 0
