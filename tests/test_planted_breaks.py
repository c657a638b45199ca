"""The planted-breaks campaign (``benchmarks/planted_breaks.py``, issue 18) stays runnable as the code moves:
every entry's source text is in its file exactly once and every test it names exists. The campaign itself
(pytest runs on copies, ~7 min) is run by hand, not here."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

if REPO.name == "mutants":  # mutmut's copy of the tree: each package file holds its mutants beside the original
    pytest.skip("the package files are mutmut's rewritten copies here", allow_module_level=True)


def _campaign():
    spec = importlib.util.spec_from_file_location("planted_breaks", REPO / "benchmarks" / "planted_breaks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_planted_break_still_finds_its_line_and_its_tests():
    breaks = _campaign().BREAKS
    assert len(breaks) >= 23
    for entry in breaks:
        text = (REPO / entry.file).read_text()
        assert text.count(entry.old) == 1, f"{entry.behaviour}: {entry.file} holds its source text " \
                                           f"{text.count(entry.old)} times"
        for node in entry.tests:
            path, _, name = node.partition("::")
            name = name.split("[", 1)[0]
            source = (REPO / path).read_text()
            assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{entry.behaviour}: no test {node}"
