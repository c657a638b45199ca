"""``set_numerics`` against torch's two TF32 APIs (the legacy ``allow_tf32`` flags and the newer per-backend
``fp32_precision``), on the installed torch.

torch refuses to *read* a legacy flag that disagrees with the newer setting ("mix of the legacy and new
APIs"), so code that switched TF32 on through the newer API before ``validate`` used to make the run die with
a traceback. Each case switches TF32 on first (newer API, legacy API, both mixed) in a fresh forked child of
one fresh interpreter (these settings are process-wide and some states cannot be undone), then calls
``set_numerics``; the expected settings are literals, read through torch's own getters.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

if not hasattr(torch._C, "_set_fp32_precision_setter"):
    pytest.skip("this torch has no fp32_precision API (torch < 2.9)", allow_module_level=True)

# What user code may have done before validate: TF32 switched on through each API.
BEFORE = {
    "new API": "b.cuda.matmul.fp32_precision = 'tf32'; b.cudnn.conv.fp32_precision = 'tf32'",
    "legacy API": "b.cuda.matmul.allow_tf32 = True; b.cudnn.allow_tf32 = True; "
                  "torch.set_float32_matmul_precision('high')",
    # new then legacy on different backends: torch itself then refuses to read cudnn.allow_tf32
    "mixed": "b.cudnn.conv.fp32_precision = 'ieee'; b.cuda.matmul.allow_tf32 = True",
    "mixed, new after legacy": "b.cuda.matmul.allow_tf32 = True; b.cuda.matmul.fp32_precision = 'tf32'; "
                               "b.cudnn.allow_tf32 = True; b.cudnn.conv.fp32_precision = 'ieee'",
}

CHILD = r"""
import json, os, sys, traceback
import torch
from senet_zoo.errors import SenetZooError
from senet_zoo.validation import numerics

b = torch.backends


def torch_says():
    # torch's own getters, directly: any of them raising is the bug this file guards
    return {"cuda.matmul.allow_tf32": b.cuda.matmul.allow_tf32, "cudnn.allow_tf32": b.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda.matmul.fp32_precision": b.cuda.matmul.fp32_precision,
            "cudnn.conv.fp32_precision": b.cudnn.conv.fp32_precision,
            "cudnn.deterministic": b.cudnn.deterministic, "cudnn.benchmark": b.cudnn.benchmark}


def case(before, mode, after):
    try:
        exec(before)
        numerics.set_numerics(mode)
        exec(after)
        if after:
            numerics.require_exact(numerics.read_flags())
        return {"set": torch_says()}
    except SenetZooError as e:
        return {"refused": str(e)}
    except BaseException as e:
        return {"raised": "".join(traceback.format_exception_only(type(e), e)).strip()[:300]}


results = {}
for key, (before, mode, after) in json.loads(sys.argv[1]).items():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(case(before, mode, after)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        results[key] = json.loads(f.read())
    os.waitpid(pid, 0)
print(json.dumps(results))
"""

EXACT = {"cuda.matmul.allow_tf32": False, "cudnn.allow_tf32": False, "float32_matmul_precision": "highest",
         "cuda.matmul.fp32_precision": "ieee", "cudnn.conv.fp32_precision": "ieee",
         "cudnn.deterministic": True, "cudnn.benchmark": False}
TF32 = {"cuda.matmul.allow_tf32": True, "cudnn.allow_tf32": True, "float32_matmul_precision": "high",
        "cuda.matmul.fp32_precision": "tf32", "cudnn.conv.fp32_precision": "tf32",
        "cudnn.deterministic": False, "cudnn.benchmark": True}


def run_cases(cases: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results():
    cases = {f"{name}/{mode}": (code, mode, "") for name, code in BEFORE.items() for mode in ("fp32", "bf16")}
    cases["torch default/fp32"] = ("", "fp32", "")
    # TF32 switched back on through the newer API after set_numerics: the loop's check must refuse, not raise
    cases["new API after set_numerics"] = ("", "fp32", "b.cuda.matmul.fp32_precision = 'tf32'")
    # the generic setting switches oneDNN's convolutions to TF32 too, which validate does not own
    cases["generic new API"] = ("b.fp32_precision = 'tf32'", "fp32", "")
    return run_cases(cases)


@pytest.mark.parametrize("before", [*BEFORE, "torch default"])
def test_exact_mode_overrides_tf32_switched_on_through_either_api(results, before):
    assert results[f"{before}/fp32"] == {"set": EXACT}


@pytest.mark.parametrize("before", list(BEFORE))
def test_amp_mode_sets_both_apis_consistently(results, before):
    assert results[f"{before}/bf16"] == {"set": TF32}


def test_tf32_mixed_in_after_set_numerics_is_refused_in_one_line_not_raised(results):
    refused = results["new API after set_numerics"]["refused"]
    assert "\n" not in refused
    assert refused.startswith("exact fp32 evaluation refused: torch reports cuda.matmul.allow_tf32=unreadable")
    assert "cuda.matmul.fp32_precision=tf32" in refused and refused.endswith("use --amp for mixed precision")


def test_generic_new_api_is_refused_for_onednn_convolutions(results):
    assert results["generic new API"] == {
        "refused": "exact fp32 evaluation refused: torch reports mkldnn.conv.fp32_precision=tf32 after senet-zoo "
                   "set exact fp32 (something outside senet-zoo changed the precision settings); use --amp for "
                   "mixed precision"}


def _validate_after(before: str) -> subprocess.CompletedProcess:
    """``senet-zoo validate`` started from code that ran ``before`` first; the weights do not exist, so a run
    that got past the precision settings stops at the weights check (the first input read)."""
    code = (f"import sys, torch\nb = torch.backends\n{before}\nfrom senet_zoo import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code, "validate", "--model", "se_resnet50", "--weights",
                           "/nonexistent/weights", "--data", "/nonexistent/data", "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_validate_after_mixed_apis_gets_past_the_precision_settings():
    r = _validate_after(BEFORE["mixed"])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip() == "senet-zoo validate: error: /nonexistent/weights: no such file or directory"


def test_validate_refuses_an_unowned_tf32_setting_in_one_line_exit_2():
    r = _validate_after("b.fp32_precision = 'tf32'")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "senet-zoo validate: error: exact fp32 evaluation refused: torch reports mkldnn.conv.fp32_precision=tf32")
