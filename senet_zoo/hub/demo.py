"""The Hub stage of ``senet-zoo demo``: gate, stage the folder a push would upload (dry run), and load it
back through timm's local-folder loader (``timm.create_model('local-dir:PATH', pretrained=True)``, the same
code path as ``hf-hub:`` after download), checking its outputs against ``senet_zoo.create_model``."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

from .. import registry
from ..errors import SenetZooError
from ..weights.folder import CONFIG_FILE
from .gate import GATE_REFUSED_EXIT, evaluate
from .push import describe
from .records import load_record
from .stage import stage

DEMO_REPO_ORG = "senet-zoo-demo"


def compare_with_timm(name: str, weights_dir: Path, staged: Path, seed: int = 0, size: int = 224) -> dict:
    """Outputs of timm on the staged folder vs senet-zoo on the converted folder, on one seeded batch."""
    import timm
    import torch

    from ..models.factory import create_model

    ours = create_model(name, pretrained=weights_dir)
    theirs = timm.create_model(f"local-dir:{staged}", pretrained=True).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    return {"architecture": type(theirs).__name__, "max_abs_diff": float((a - b).abs().max()),
            "identical": bool(torch.equal(a, b)), "same_top5": bool(torch.equal(a.topk(5).indices,
                                                                                 b.topk(5).indices)),
            "close": bool(torch.allclose(a, b, rtol=1e-5, atol=1e-5))}


def run_demo_hub(work_dir: Path, weights_dir: Path, records: list[Path], log: Callable[[str], None] = print) -> Path:
    work_dir, weights_dir = Path(work_dir), Path(weights_dir)
    try:
        name = json.loads((weights_dir / CONFIG_FILE).read_text())["senet_zoo"]["model"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise SenetZooError(weights_dir / CONFIG_FILE, f"not a converted folder's config ({e})") from None
    ckpt = registry.get(name)
    decision = evaluate(name, weights_dir, [load_record(p) for p in records])
    for line in describe(decision):
        log(line)
    if not decision.passed:
        raise SenetZooError(weights_dir, f"the gate refuses: {decision.refusal}", exit_code=GATE_REFUSED_EXIT)
    staged = work_dir / name
    repo_id = f"{DEMO_REPO_ORG}/{name}"
    files = stage(decision, repo_id, staged)
    log(f"dry run for {repo_id}: {staged} holds {', '.join(files)}; nothing uploaded")
    if ckpt.timm_architecture is None:
        log(f"timm has no {ckpt.display_name}; skipping the timm load-back")
        return staged
    if importlib.util.find_spec("timm") is None:
        log("timm is not installed: skipping the timm load-back (pip install 'senet-zoo[timm]')")
        return staged
    result = compare_with_timm(name, weights_dir, staged)
    log(f"timm.create_model('local-dir:{staged}', pretrained=True) -> {result['architecture']}: max |Δlogit| "
        f"{result['max_abs_diff']:.3g} vs senet_zoo.create_model, "
        f"{'identical' if result['identical'] else 'close' if result['close'] else 'DIFFERENT'} outputs, "
        f"top-5 {'equal' if result['same_top5'] else 'DIFFERENT'}")
    if not (result["close"] and result["same_top5"]):
        raise SenetZooError(staged, "timm's outputs differ from senet-zoo's")
    return staged
