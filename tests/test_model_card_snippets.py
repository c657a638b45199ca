"""A staged model card as a Hub user meets it: every Python snippet runs as pasted, against the dry-run
folder served by the local Hub (tests/support/hub_server.py), and the metadata parses with
``huggingface_hub``'s own ``ModelCard`` / model-index code.

The registry copy named by ``SENET_ZOO_REGISTRY`` pins the uploaded commit, as ``checkpoints.yaml`` will once
the weights are published, so that ``create_model(..., pretrained=True)`` in the card downloads from it.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from senet_zoo.files import sha256_file
from support.hub_client import upload
from support.hub_fixtures import TOKEN, shared_converted, write_record
from support.hub_server import FakeHub

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "my-org/se_resnet50"
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(card_text: str) -> list[str]:
    return SNIPPET.findall(card_text)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    from senet_zoo.hub.push import push
    from senet_zoo.hub.records import find_records

    weights = shared_converted(tmp_path_factory)
    runs = tmp_path_factory.mktemp("runs")
    write_record(runs, weights, top1_err=22.40, top5_err=6.34)
    folder = tmp_path_factory.mktemp("stage") / "se_resnet50"
    push("se_resnet50", weights, REPO_ID, find_records([runs]), dry_run=folder, log=lambda s: None,
         endpoint="https://huggingface.co")
    return folder


def test_card_metadata_parses_with_huggingface_hub(staged):
    from huggingface_hub import ModelCard, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(staged / "README.md")
    assert "arxiv:1709.01507" in card.data.tags
    meta = metadata_load(staged / "README.md")
    assert meta["datasets"] == ["ILSVRC/imagenet-1k"] and meta["metrics"] == ["accuracy"]
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == "se_resnet50"
    link = "https://huggingface.co/my-org/se_resnet50/blob/main/validation/se_resnet50-224.json"
    assert [(r.task_type, r.dataset_type, r.dataset_split, r.dataset_revision, r.metric_type, r.metric_value,
             r.metric_args, r.source_url) for r in results] == [
        ("image-classification", "ILSVRC/imagenet-1k", "validation", None, "accuracy", 77.6, None, link),
        ("image-classification", "ILSVRC/imagenet-1k", "validation", None, "accuracy", 93.66, {"k": 5}, link)]
    assert [r.metric_name for r in results] == ["Top-1 accuracy (224x224 centre crop)",
                                                "Top-5 accuracy (224x224 centre crop)"]
    assert results[0].source_name == "senet-zoo validation record validation/se_resnet50-224.json"
    assert (staged / "validation" / "se_resnet50-224.json").is_file()     # the link names a staged file
    assert [(r.metric_value, r.source_url) for r in card.data.eval_results] == [(77.6, link), (93.66, link)]
    body = card.text
    for needle in ("| Parameters | 28.09 M (28,088,024) |", "| GMACs (multiply-adds at 224 × 224) | 3.86",
                   "| Image size | 224 × 224", "pip install senet-zoo",
                   'allow_patterns=["config.json", "model.safetensors"]', "pretrained_cfg_overlay=dict("):
        assert needle in body, needle


def test_every_snippet_is_python_and_the_overlay_is_ours(staged):
    import senet_zoo

    code = snippets((staged / "README.md").read_text())
    assert len(code) == 4
    for c in code:
        ast.parse(c)
    call = ast.parse(next(c for c in code if "pretrained_cfg_overlay" in c))
    node = next(n for n in ast.walk(call) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "dict")
    given = {k.arg: eval(compile(ast.Expression(k.value), "card", "eval")) for k in node.keywords if k.arg != "file"}
    ours = senet_zoo.pretrained_cfg_overlay("se_resnet50")
    assert set(given) == set(ours) - {"input_size"}     # timm's own input size for the name is ours
    for key, value in given.items():
        assert value == (pytest.approx(ours[key]) if isinstance(value, tuple) else ours[key]), key


# What each snippet must have done, checked in the same interpreter right after it runs.
CHECKS = [
    'assert abs(model.pretrained_cfg["mean"][0] - 123 / 255) < 1e-9, model.pretrained_cfg',
    'import os; assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"], os.listdir(folder)',
    'assert config["mean"][0] == 123 / 255 and config["interpolation"] == "bilinear"\n'
    'assert all(str(labels[int(i)]).startswith("n") and names[labels[int(i)]] for i in top5.indices[0])',
    'cfg = timm.data.resolve_data_config({}, model=model)\n'
    'assert cfg["mean"][0] == 123 / 255 and cfg["std"][0] == 1 / 255 and cfg["crop_pct"] == 0.875, cfg',
]


@pytest.mark.slow
def test_every_snippet_runs_as_pasted_against_the_local_hub(staged, tmp_path):
    import cv2
    import numpy as np

    code = snippets((staged / "README.md").read_text())
    assert len(code) == len(CHECKS)
    with FakeHub(token=TOKEN) as hub:
        sha = upload(hub, REPO_ID, staged)
        doc = yaml.safe_load((REPO / "checkpoints.yaml").read_text())
        doc["models"]["se_resnet50"]["hub"] = {"repo_id": REPO_ID, "revision": sha,
                                               "sha256": sha256_file(staged / "model.safetensors")}
        (tmp_path / "checkpoints.yaml").write_text(yaml.safe_dump(doc))
        rng = np.random.default_rng(0)
        cv2.imwrite(str(tmp_path / "photo.jpg"),
                    cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8), (400, 300)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "hf-cache"), HF_HUB_DISABLE_XET="1",
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   SENET_ZOO_REGISTRY=str(tmp_path / "checkpoints.yaml"), PYTHONPATH=str(REPO))
        for i, (snippet, check) in enumerate(zip(code, CHECKS)):
            proc = subprocess.run([sys.executable, "-c", snippet + "\n" + check], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"snippet {i}:\n{snippet}\n{proc.stderr[-3000:]}"
            print(f"--- snippet {i} ---\n{snippet}>>> {proc.stdout.strip()[:300]}")
        downloaded = {r["path"].split("/resolve/")[-1].split("/", 1)[-1] for r in hub.requests
                      if "/resolve/" in r["path"]}
        assert not any(p.startswith("validation/") for p in downloaded), downloaded  # allow_patterns held
