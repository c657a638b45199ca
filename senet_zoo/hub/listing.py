"""``senet-zoo list``: where each of the seven models stands, from release hash to Hub.

ImageNet reproductions and reference-runtime agreement checks (the demo's stand-in, labelled by OpenCV's
Caffe runtime on generated images) are different claims, so they have a column each.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ..errors import SenetZooError
from ..weights.folder import WEIGHTS_FILE, WeightsInfo, read_weights
from .gate import evaluate
from .records import Record, RecordCheck, check_record


@dataclass
class Row:
    model: str
    release: str
    converted: str
    validated: str
    agreement: str
    published: str


def _pct(x) -> str:
    return f"{x:.2f}" if isinstance(x, (int, float)) else "?"


def _result(c: RecordCheck, note: str = "") -> str:
    r = c.record
    pub = r.get("published") or {}
    return (f"{r.img_size}: {_pct(r.top1_err)}/{_pct(r.top5_err)} vs {_pct(pub.get('top1_err'))}/"
            f"{_pct(pub.get('top5_err'))} {r.verdict}{note}")


def _validated(name: str, weights_dir: Path, weights: WeightsInfo | None, records: list[Record]) -> str:
    ckpt = registry.get(name)
    mine = [r for r in records if r.model == name]
    if not mine:
        return "–"
    parts = []
    if weights is not None:
        decision = evaluate(name, weights_dir, mine, weights)
        for e in ckpt.eval:
            if e.img_size in decision.accepted:
                parts.append(_result(decision.accepted[e.img_size]))
                continue
            w = decision.weights
            checks = [check_record(r, w.sha256, w.converter_version, w.source_sha256)
                      for r in mine if r.img_size == e.img_size]
            sound = sorted((c for c in checks if c.sound), key=lambda c: c.record.created)
            if sound:
                parts.append(_result(sound[-1]))
            elif checks:
                other = all(c.record.weights_sha256 != decision.weights.sha256 for c in checks)
                parts.append(f"{e.img_size}: " + ("stale (records of other weights)" if other
                                                  else f"unsound record ({checks[-1].problems[0]})"))
    else:
        for e in ckpt.eval:
            sound = sorted((c for c in (check_record(r) for r in mine if r.img_size == e.img_size) if c.sound),
                           key=lambda c: c.record.created)
            if sound:
                parts.append(_result(sound[-1], " (weights not here)"))
    return "; ".join(parts) or "–"


def rows(weights_root: str | Path, records: list[Record]) -> list[Row]:
    out = []
    for name in registry.names():
        ckpt = registry.get(name)
        release = ckpt.caffemodel_sha256[:12] + "…" if ckpt.caffemodel_sha256 else "unknown"
        d = Path(weights_root) / name
        converted, w = "no", None
        if (d / WEIGHTS_FILE).is_file():
            try:
                w = read_weights(d, name)
                converted = f"{w.sha256[:12]}… (converter {w.converter_version})"
            except SenetZooError as e:
                converted = f"invalid ({e.message})"
        # timm's port is another model's evidence (report and the card show it beside ours)
        imagenet = [r for r in records if not r.is_reference_runtime and not r.is_timm_port]
        reference = [r for r in records if r.is_reference_runtime]
        columns = []
        for subset in (imagenet, reference):
            try:
                columns.append(_validated(name, d, w, subset))
            except SenetZooError as e:
                columns.append(f"? ({e.message})")
        published = f"{ckpt.hub_repo_id}@{(ckpt.hub_revision or '?')[:12]}" if ckpt.hub_repo_id else "–"
        out.append(Row(name, release, converted, *columns, published))
    return out


HEADERS = Row("MODEL", "RELEASE SHA256", "CONVERTED (model.safetensors)",
              "IMAGENET (size: top-1/top-5 err % vs published)",
              "REFERENCE RUNTIME (size: top-1/top-5 disagreement %, not ImageNet)", "HUB")


def format_table(table: list[Row]) -> str:
    cols = list(HEADERS.__dataclass_fields__)
    all_rows = [HEADERS, *table]
    widths = {c: max(len(getattr(r, c)) for r in all_rows) for c in cols}
    lines = []
    for r in all_rows:
        lines.append("  ".join(getattr(r, c).ljust(widths[c]) for c in cols).rstrip())
    return "\n".join(lines)
