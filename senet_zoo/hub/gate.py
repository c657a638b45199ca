"""The push gate: only weights that a sound validation record says REPRODUCED may be published.

For a converted folder (``model.safetensors`` + ``config.json``) and a set of records, the gate needs, at the
model's primary evaluation setting (224) and at every other registry setting for which a record of these
weights exists (SENet-154 at 320), a record that

* is about exactly these weights (its ``weights.sha256`` is the folder's ``model.safetensors``), and, if it
  names a converter version, the one in the weights' metadata;
* is sound (``records.check_record``): predictions file present and unchanged, numbers recomputed from it,
  verdict consistent with its numbers and the registry's published numbers and tolerance;
* says REPRODUCED.

Anything else is a refusal, one line saying why; ``push --force --reason TEXT`` overrides it and the reason
goes into the model card.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import registry
from ..weights.folder import WeightsInfo, read_weights
from .records import Record, RecordCheck, check_record

GATE_REFUSED_EXIT = 3


def _preference(c: RecordCheck) -> tuple:
    r = c.record
    return (c.comparison in ("release", "paper"), r.get("protocol", "matches_published") is not False,
            r.get("preprocess", "name") == "caffe", r.get("precision") == "fp32", r.created)


@dataclass
class GateDecision:
    model: str
    weights: WeightsInfo
    accepted: dict[int, RecordCheck] = field(default_factory=dict)   # img_size -> the record that vouches
    others: list[RecordCheck] = field(default_factory=list)          # other sound records of these weights
    timm_port: list[RecordCheck] = field(default_factory=list)       # sound records of timm's port: shown, never vouching
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    forced_reason: str | None = None

    @property
    def passed(self) -> bool:
        return not self.refusals

    @property
    def refusal(self) -> str | None:
        return "; ".join(self.refusals) if self.refusals else None

    @property
    def records(self) -> list[Record]:
        """Every sound record published with these weights: the accepted ones first, then the others, then
        timm's port's (the comparison the card shows)."""
        return ([self.accepted[size].record for size in sorted(self.accepted)] + [c.record for c in self.others]
                + [c.record for c in self.timm_port])


def evaluate(name: str, weights_dir: str | Path, records: list[Record],
             weights: WeightsInfo | None = None) -> GateDecision:
    """The gate's decision for the converted folder ``weights_dir`` (``weights``: already read)."""
    ckpt = registry.get(name)
    weights = weights or read_weights(weights_dir, name)
    decision = GateDecision(name, weights)
    mine = [r for r in records if r.model == name and not r.is_timm_port]
    checks = [check_record(r, weights.sha256, weights.converter_version, weights.source_sha256) for r in mine]
    ported = [check_record(r) for r in records if r.model == name and r.is_timm_port]
    decision.timm_port = sorted((c for c in ported if c.sound and c.comparison in ("release", "paper")),
                                key=lambda c: (c.record.img_size or 0, c.record.created))
    ignored = len(records) - len(mine) - len(ported)
    if ignored:
        decision.notes.append(f"{ignored} record(s) of other models ignored")

    primary = ckpt.eval[0].img_size
    sizes = [e.img_size for e in ckpt.eval]
    required = [s for s in sizes if s == primary or any(
        c.record.img_size == s and c.record.weights_sha256 == weights.sha256 for c in checks)]
    for size in required:
        at = [c for c in checks if c.record.img_size == size]
        good = [c for c in at if c.reproduced]
        if good:
            best = max(good, key=_preference)
            decision.accepted[size] = best
            continue
        decision.refusals.append(_why_not(size, at, weights, ckpt.display_name))
    for c in checks:
        if c.record.img_size not in sizes:
            decision.notes.append(f"{c.record.path} ignored: {c.problems[-1]}")
    chosen = {id(c) for c in decision.accepted.values()}
    decision.others = sorted((c for c in checks if c.sound and id(c) not in chosen),
                             key=lambda c: (c.record.img_size or 0, c.record.created))
    for size in sizes:
        if size not in required:
            decision.notes.append(f"no record at {size} for these weights (optional)")

    # A comparison with the release's numbers vouches for the release: the weights must come from it.
    if any(c.comparison in ("release", "paper") for c in decision.accepted.values()):
        if ckpt.caffemodel_sha256 and weights.source_sha256 != ckpt.caffemodel_sha256:
            decision.refusals.append(
                f"converted from {weights.source_file} (sha256 {str(weights.source_sha256)[:12]}…), not the "
                f"release {ckpt.caffemodel} (sha256 {ckpt.caffemodel_sha256[:12]}…)")
    return decision


def _why_not(size: int, at: list[RecordCheck], weights: WeightsInfo, display: str) -> str:
    same = [c for c in at if c.record.weights_sha256 == weights.sha256]
    sound = sorted((c for c in same if c.sound), key=lambda c: c.record.created)
    if sound:
        c = sound[-1]
        r = c.record
        pub = r.get("published") or {}
        return (f"{r.path} says {r.verdict} at {size} (top-1/top-5 err {r.top1_err:.2f}/{r.top5_err:.2f} vs "
                f"published {pub.get('top1_err')}/{pub.get('top5_err')}, tolerance {r.get('tolerance_pp')} pp)")
    if same:
        c = sorted(same, key=lambda c: c.record.created)[-1]
        return f"{c.record.path} {c.problems[0]}"
    if at:
        c = sorted(at, key=lambda c: c.record.created)[-1]
        return (f"no validation record at {size} for these weights (sha256 {weights.sha256[:12]}…): "
                f"{c.record.path} {c.problems[0]}" + (f" (+{len(at) - 1} more)" if len(at) > 1 else ""))
    return (f"no validation record of {display} at {size} (validate these weights first: senet-zoo validate "
            f"--model {weights.model} --weights {weights.dir} --data IMAGENET_VAL --img-size {size} "
            f"--output runs/{weights.model}-{size}.json)")
