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
from typing import Any

from .. import jsonio, registry
from ..errors import SenetZooError
from ..files import sha256_file
from .records import Record, RecordCheck, check_record

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
GATE_REFUSED_EXIT = 3


@dataclass
class WeightsInfo:
    dir: Path
    model: str
    sha256: str
    size: int
    num_tensors: int
    metadata: dict[str, str]
    config: dict[str, Any]

    @property
    def weights_path(self) -> Path:
        return self.dir / WEIGHTS_FILE

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def converter_version(self) -> str | None:
        return self.metadata.get("converter_version")

    @property
    def source_sha256(self) -> str | None:
        return self.metadata.get("source_sha256") or self.config.get("senet_zoo", {}).get("source_sha256")

    @property
    def source_file(self) -> str | None:
        return self.config.get("senet_zoo", {}).get("source_file") or self.metadata.get("source_file")


def read_safetensors_header(path: Path) -> tuple[dict[str, str], int]:
    """(``__metadata__``, number of tensors), checking that the file is complete; torch is not needed."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n <= 0 or n > min(size - 8, 100 << 20):
            raise SenetZooError(path, "not a safetensors file (bad header length)")
        try:
            header = jsonio.loads(f.read(n))
        except ValueError:
            raise SenetZooError(path, "not a safetensors file (header is not JSON)") from None
    metadata = header.pop("__metadata__", None) or {} if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SenetZooError(path, "not a safetensors file (header or __metadata__ is not a JSON object of strings)")
    try:
        end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise SenetZooError(path, "not a safetensors file (bad tensor entry)") from None
    if 8 + n + end != size:
        raise SenetZooError(path, f"truncated or padded: {size} bytes, the header describes {8 + n + end}")
    return dict(metadata), len(header)


def read_weights(weights_dir: str | Path, name: str, sha256: str | None = None) -> WeightsInfo:
    """A converted folder, checked to be complete, self-consistent and of model ``name`` (``sha256``: the
    weights' hash when the caller has just computed it)."""
    d = Path(weights_dir)
    weights, config_path = d / WEIGHTS_FILE, d / CONFIG_FILE
    if not d.is_dir():
        raise SenetZooError(d, "no such converted folder (senet-zoo convert --model "
                            f"{name} --caffemodel ... --output {d})")
    for p in (weights, config_path):
        if not p.is_file():
            raise SenetZooError(p, "missing: a converted folder holds model.safetensors and config.json")
    metadata, num_tensors = read_safetensors_header(weights)
    try:
        config = jsonio.load_path(config_path)
    except (OSError, ValueError) as e:
        raise SenetZooError(config_path, f"not valid JSON ({e})") from None
    ours = config.get("senet_zoo") if isinstance(config, dict) else None
    if not isinstance(ours, dict) or "pretrained_cfg" not in config or "architecture" not in config:
        raise SenetZooError(config_path, "not a senet-zoo config.json (needs architecture, pretrained_cfg, senet_zoo)")
    for what, value in (("config.json", ours.get("model")), ("safetensors metadata", metadata.get("model"))):
        if value != name:
            raise SenetZooError(d, f"holds weights of {value!r} ({what}), not {name!r}")
    ckpt = registry.get(name)
    if config["architecture"] != (ckpt.timm_architecture or ckpt.architecture):
        raise SenetZooError(config_path, f"architecture {config['architecture']!r} is not "
                            f"{ckpt.timm_architecture or ckpt.architecture!r}")
    for key in ("converter_version", "source_sha256"):
        if ours.get(key) != metadata.get(key):
            raise SenetZooError(d, f"config.json and model.safetensors disagree on {key} "
                                f"({ours.get(key)} vs {metadata.get(key)}): not from one conversion")
    return WeightsInfo(d, name, sha256 or sha256_file(weights), weights.stat().st_size, num_tensors, metadata,
                       config)


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
        """Every sound record of these weights: the accepted ones first, then the others."""
        return [self.accepted[size].record for size in sorted(self.accepted)] + [c.record for c in self.others]


def evaluate(name: str, weights_dir: str | Path, records: list[Record],
             weights: WeightsInfo | None = None) -> GateDecision:
    """The gate's decision for the converted folder ``weights_dir`` (``weights``: already read)."""
    ckpt = registry.get(name)
    weights = weights or read_weights(weights_dir, name)
    decision = GateDecision(name, weights)
    mine = [r for r in records if r.model == name]
    checks = [check_record(r, weights.sha256, weights.converter_version, weights.source_sha256) for r in mine]
    ignored = len(records) - len(mine)
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
