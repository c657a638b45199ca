"""Validation records (``senet-zoo validate --output runs/x.json``) as evidence: found, read and checked.

A record is *sound* when its own evidence holds together: its predictions file is where it says, has the
sha256 it says, gives the errors it states, and its verdict follows from those errors, the published
numbers and the tolerance. Against the registry it must also use a registry evaluation setting, no wider
tolerance than the registry's, and the registry's published numbers (or say it compares against the
reference runtime: the seeded stand-in of ``senet-zoo demo``); a comparison with the release's numbers must
cover the whole 50 000-image validation set. Whether it vouches for particular weights is the gate's
question (``gate.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import jsonio, registry
from ..errors import SenetZooError
from ..files import sha256_file
# One implementation of the record's format and metrics, shared with `senet-zoo validate`.
from ..validation.record import (FULL_VAL_IMAGES, REFERENCE_RUNTIME_PREFIX, REPRODUCED, SCHEMA,
                                 recompute_metrics)
from ..validation.record import verdict as validation_verdict

# Records may round errors to 2 decimals; a stated error within this of the recomputed one matches.
ROUNDING_PP = 0.005 + 1e-9


@dataclass
class Record:
    path: Path
    data: dict[str, Any] = field(repr=False)

    def get(self, *keys: str, default: Any = None) -> Any:
        value: Any = self.data
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    @property
    def model(self) -> str:
        return str(self.data.get("model"))

    @property
    def img_size(self) -> int | None:
        size = self.data.get("img_size")
        return int(size) if isinstance(size, (int, float)) else None

    @property
    def weights_sha256(self) -> str | None:
        return self.get("weights", "sha256")

    @property
    def verdict(self) -> str:
        return str(self.data.get("verdict"))

    @property
    def top1_err(self) -> float | None:
        return self.get("results", "top1_err")

    @property
    def top5_err(self) -> float | None:
        return self.get("results", "top5_err")

    @property
    def num_images(self) -> int | None:
        return self.get("results", "num_images")

    @property
    def created(self) -> str:
        return str(self.data.get("created") or "")

    @property
    def predictions_path(self) -> Path | None:
        name = self.get("predictions", "file")
        return None if not name else self.path.parent / name

    @property
    def published_source(self) -> str:
        return str(self.get("published", "source", default="") or "")

    @property
    def is_timm_port(self) -> bool:
        """A record of timm's legacy_se* port (``validate --timm-weights``), not of a conversion of ours."""
        return self.get("weights", "origin") == "timm"

    @property
    def is_reference_runtime(self) -> bool:
        return self.published_source.lower().startswith(REFERENCE_RUNTIME_PREFIX.strip().lower())

    def short(self) -> str:
        return f"{self.path} ({self.model} @{self.img_size}, {self.verdict})"


def load_record(path: str | Path) -> Record:
    path = Path(path)
    try:
        data = jsonio.load_path(path)
    except FileNotFoundError:
        raise SenetZooError(path, "no such validation record") from None
    except (OSError, ValueError) as e:
        raise SenetZooError(path, f"not a readable validation record ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise SenetZooError(path, f"not a validation record (schema {found!r}, expected {SCHEMA!r})")
    return Record(path, data)


def find_records(dirs: Iterable[str | Path] = (), files: Iterable[str | Path] = ()) -> list[Record]:
    """Records named explicitly (an unreadable one is an error) and every record under ``dirs``
    (other JSON files there are skipped). A missing directory contributes nothing."""
    found: dict[Path, Record] = {}
    for f in files:
        record = load_record(f)
        found.setdefault(record.path.resolve(), record)
    for d in dirs:
        d = Path(d)
        if d.is_file():
            record = load_record(d)
            found.setdefault(record.path.resolve(), record)
            continue
        for path in sorted(d.rglob("*.json")) if d.is_dir() else ():
            try:
                record = load_record(path)
            except SenetZooError:
                continue
            found.setdefault(path.resolve(), record)
    return list(found.values())


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class RecordCheck:
    """What a record is worth: ``problems`` empty means sound (for ``weights_sha256`` when given)."""

    record: Record
    problems: list[str]
    comparison: str = ""          # "release" | "paper" | "reference" | "" (unknown)
    published_label: str = ""     # what the record's published numbers are, in words
    recomputed: tuple[float, float, int] | None = None

    @property
    def sound(self) -> bool:
        return not self.problems

    @property
    def reproduced(self) -> bool:
        return self.sound and self.record.verdict == REPRODUCED


def check_record(record: Record, weights_sha256: str | None = None, converter_version: str | None = None,
                 source_sha256: str | None = None) -> RecordCheck:
    """Check a record's own evidence and its agreement with the registry; with ``weights_sha256``, also
    that it is about those weights (and, where it names them, the same converter version and source file)."""
    problems: list[str] = []
    check = RecordCheck(record, problems)

    # About these weights? (first, because it is the most common reason a record does not count)
    if weights_sha256 is not None:
        if record.weights_sha256 != weights_sha256:
            problems.append(f"is for other weights (sha256 {str(record.weights_sha256)[:12]}…, "
                            f"these are {weights_sha256[:12]}…)")
        rec_cv = record.get("weights", "converter_version")
        if rec_cv is not None and converter_version is not None and str(rec_cv) != str(converter_version):
            problems.append(f"is stale: made for converter {rec_cv}, the weights say {converter_version}")
        rec_src = record.get("weights", "source_sha256")
        if rec_src is not None and source_sha256 is not None and rec_src != source_sha256:
            problems.append(f"is stale: made for weights converted from {str(rec_src)[:12]}…, these come from "
                            f"{source_sha256[:12]}…")

    top1, top5, n = _num(record.top1_err), _num(record.top5_err), record.num_images
    if top1 is None or top5 is None or not isinstance(n, int):
        problems.append("has no results (top1_err, top5_err, num_images)")
        return check
    if not isinstance(record.weights_sha256, str):
        problems.append("names no weights sha256")

    # The predictions file: present, unchanged, and giving the stated numbers.
    pred = record.predictions_path
    if pred is None:
        problems.append("names no predictions file")
    elif not pred.is_file():
        problems.append(f"is stale: its predictions file {pred.name} is missing")
    elif sha256_file(pred) != record.get("predictions", "sha256"):
        problems.append(f"is stale: its predictions file {pred.name} has changed (sha256 differs)")
    else:
        try:
            r1, r5, rn = recompute_metrics(pred)
        except Exception as e:  # a corrupt npz is the record's problem, reported as such
            problems.append(f"has an unreadable predictions file {pred.name} ({e})")
        else:
            check.recomputed = (r1, r5, rn)
            if rn != n or abs(r1 - top1) > ROUNDING_PP or abs(r5 - top5) > ROUNDING_PP:
                problems.append(f"does not match its predictions file: states top-1/top-5 err {top1:.3f}/"
                                f"{top5:.3f} on {n} images, the predictions give {r1:.3f}/{r5:.3f} on {rn}")

    # The verdict follows from the numbers it states.
    pub1, pub5 = _num(record.get("published", "top1_err")), _num(record.get("published", "top5_err"))
    tol = _num(record.data.get("tolerance_pp"))
    if record.verdict == REPRODUCED:
        if pub1 is None or pub5 is None or tol is None:
            problems.append("says REPRODUCED without published numbers and a tolerance")
        elif check.recomputed:  # (without predictions the record is already refused above)
            published = {"top1_err": pub1, "top5_err": pub5}
            if validation_verdict(*check.recomputed[:2], published, tol) != REPRODUCED:
                problems.append(f"says REPRODUCED but its errors {top1:.2f}/{top5:.2f} are more than "
                                f"{tol} pp from the published {pub1:.2f}/{pub5:.2f}")

    # Against the registry.
    try:
        ckpt = registry.get(record.model)
    except SenetZooError:
        problems.append(f"is for unknown model {record.model!r}")
        return check
    size = record.img_size
    setting = ckpt.eval_setting(size) if size is not None else None
    if setting is None:
        problems.append(f"uses img_size {size}, not an evaluation setting of {ckpt.display_name} "
                        f"({', '.join(str(e.img_size) for e in ckpt.eval)})")
        return check
    if tol is not None and tol > ckpt.tolerance_pp + 1e-9:
        problems.append(f"uses tolerance {tol} pp, wider than the registry's {ckpt.tolerance_pp}")
    published = ckpt.published.get(setting.published)
    if pub1 is not None and pub5 is not None and published is not None \
            and abs(pub1 - published.top1_err) < 1e-6 and abs(pub5 - published.top5_err) < 1e-6:
        check.comparison = "release" if setting.published == "release" else "paper"
        check.published_label = published.source
        if n < FULL_VAL_IMAGES:
            problems.append(f"covers {n} images; the published numbers are for all {FULL_VAL_IMAGES}")
    elif record.is_reference_runtime:
        check.comparison = "reference"
        check.published_label = record.published_source
    elif pub1 is not None:
        # the registry refuses a setting whose published numbers it lacks, so `published` is there
        problems.append(f"compares against {pub1}/{pub5} ({record.published_source or 'no source'}), "
                        f"not the registry's published numbers ({published.top1_err}/{published.top5_err})")
    return check
