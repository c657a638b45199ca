"""The layer contracts in pyproject.toml hold (``lint-imports``), and they bite: the same check run on a copy
of the package with one upward import planted in it fails and names that import."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# lint-imports' own entry point, run by this interpreter (a test dependency: missing, it fails, never skips)
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_import_points_down():
    r = lint(REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "broken" not in r.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_an_upward_import_breaks_the_build(tmp_path):
    shutil.copytree(REPO / "senet_zoo", tmp_path / "senet_zoo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    # what the layers forbid: the model code reaching up into validation (here inside a function, where a
    # lazy import would hide it from a reader but not from the linter)
    factory = tmp_path / "senet_zoo" / "models" / "factory.py"
    factory.write_text(factory.read_text() + "\n\ndef _planted():\n    from ..validation import runner  # noqa\n")
    r = lint(tmp_path)
    assert r.returncode != 0
    assert "senet_zoo.models is not allowed to import senet_zoo.validation" in r.stdout
    assert "senet_zoo.models.factory -> senet_zoo.validation.runner" in r.stdout
