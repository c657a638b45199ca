"""What ``set_numerics`` leaves in torch, read back from torch itself (not from what the function returns).

In a child interpreter: these settings are process-wide, and torch refuses to read its legacy TF32 flags once
the two APIs disagree (test_numerics_apis.py), so a test here must not leave them changed for the next.
"""
import json
import os
import subprocess
import sys

from conftest import REPO

CHILD = r"""
import json, torch
from senet_zoo.validation import numerics
b = torch.backends
out = {}
for mode in ("fp32", "bf16"):
    # the opposite of the mode first, so that every setting read below was changed by set_numerics
    b.cudnn.deterministic, b.cudnn.benchmark = mode != "fp32", mode == "fp32"
    numerics.set_numerics(mode)
    out[mode] = {"deterministic": b.cudnn.deterministic, "benchmark": b.cudnn.benchmark,
                 "matmul": torch.get_float32_matmul_precision()}
print(json.dumps(out))
"""


def test_exact_mode_leaves_cudnn_deterministic_and_mixed_precision_lets_it_choose():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == {
        "fp32": {"deterministic": True, "benchmark": False, "matmul": "highest"},
        "bf16": {"deterministic": False, "benchmark": True, "matmul": "high"}}
