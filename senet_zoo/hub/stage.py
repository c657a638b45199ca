"""The folder that is pushed, exactly: ``push --dry-run DIR`` writes it and uploads nothing.

    README.md                   model card (model_card.py)
    config.json                 the converted folder's, byte for byte (timm's Hub layout)
    model.safetensors           the converted folder's, byte for byte (its sha256 is re-checked after staging)
    validation/<record>.json    every sound record of these weights, verbatim
    validation/<predictions>    the predictions file each record names (records refer to it by file name)
    .eval_results/imagenet-1k-SIZE.yaml   the Hub's evaluation results, one per published setting
                                (eval_results.py), each linking its record
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SenetZooError
from ..files import atomic_dir, sha256_file
from ..weights.folder import CONFIG_FILE, WEIGHTS_FILE
from .eval_results import EVAL_RESULTS_DIR, eval_result_files
from .model_card import render_model_card

if TYPE_CHECKING:
    from .gate import GateDecision

README_FILE = "README.md"
VALIDATION_DIR = "validation"
TOP_LEVEL = {README_FILE, CONFIG_FILE, WEIGHTS_FILE, VALIDATION_DIR, EVAL_RESULTS_DIR}


def _place(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _is_previous_stage(d: Path) -> bool:
    entries = {p.name for p in d.iterdir()}
    return entries <= TOP_LEVEL and {README_FILE, WEIGHTS_FILE} <= entries


def _validation_names(decision: "GateDecision") -> tuple[dict[int, str], dict[str, Path]]:
    """Names under validation/ for each record (renamed only on a clash) and each predictions file."""
    record_names: dict[int, str] = {}
    predictions: dict[str, Path] = {}
    for r in decision.records:
        pred = r.predictions_path
        assert pred is not None  # sound records name one
        if pred.name in predictions and sha256_file(predictions[pred.name]) != sha256_file(pred):
            raise SenetZooError(pred, f"two records name different predictions files called {pred.name}; "
                                "rename one (and its record's predictions.file)")
        predictions[pred.name] = pred
        name = r.path.name
        if name in record_names.values() or name in predictions:
            name = f"{r.model}-{r.img_size}-{len(record_names)}-{name}"
        record_names[id(r)] = name
    return record_names, predictions


def stage(decision: "GateDecision", repo_id: str, dest: str | Path, link: bool = False,
          endpoint: str | None = None) -> list[str]:
    """Write the Hub folder for ``decision`` to ``dest`` (atomically) and return its files, relative and
    sorted. An existing ``dest`` is replaced only if it is empty or an earlier staging. ``endpoint``: the
    Hub that the card's and the results' links to the records point to (default: huggingface_hub's)."""
    dest = Path(dest)
    if dest.exists():
        if not dest.is_dir():
            raise SenetZooError(dest, "exists and is not a folder")
        if any(dest.iterdir()) and not _is_previous_stage(dest):
            raise SenetZooError(dest, "exists and holds other files; give an empty or new folder")
    w = decision.weights
    record_names, predictions = _validation_names(decision)
    card = render_model_card(decision, repo_id, record_names, endpoint)
    results = eval_result_files(decision, repo_id, record_names, endpoint)
    with atomic_dir(dest) as tmp:
        (tmp / README_FILE).write_text(card, encoding="utf-8")
        for rel, text in results.items():
            (tmp / rel).parent.mkdir(exist_ok=True)
            (tmp / rel).write_text(text, encoding="utf-8")
        shutil.copyfile(w.config_path, tmp / CONFIG_FILE)
        _place(w.weights_path, tmp / WEIGHTS_FILE, link)
        if decision.records:
            (tmp / VALIDATION_DIR).mkdir()
            for r in decision.records:
                shutil.copyfile(r.path, tmp / VALIDATION_DIR / record_names[id(r)])
            for name, src in predictions.items():
                shutil.copyfile(src, tmp / VALIDATION_DIR / name)
            for r in decision.records:  # the evidence must be what the gate checked
                got = sha256_file(tmp / VALIDATION_DIR / r.predictions_path.name)
                if got != r.get("predictions", "sha256"):
                    raise SenetZooError(r.predictions_path, "changed while being staged")
        staged = sha256_file(tmp / WEIGHTS_FILE)
        if staged != w.sha256:
            raise SenetZooError(w.weights_path, f"changed while being staged (sha256 {staged[:12]}…, the gate "
                                f"checked {w.sha256[:12]}…)")
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
