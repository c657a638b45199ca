#!/usr/bin/env bash
# Validation throughput on a GPU machine: SENet-154 on a few thousand generated ImageNet-sized JPEGs,
# exact fp32 and --amp bf16, ours (senet_zoo.validation) against timm's validate.py pipeline, in one run.
#
#   bash benchmarks/gpu_validate.sh                 # defaults below; ~5 min on one H100 incl. data generation
#   N=2000 WORKERS=8 BS=64 bash benchmarks/gpu_validate.sh
#   DEVICE=cpu MODEL=se_resnet50 N=32 BS=8 bash benchmarks/gpu_validate.sh   # dry run of the script on a CPU
#
# Writes runs/bench-gpu/: bench.json (benchmarks/validate.py figures), the two CLI validation records, and
# env.txt (GPU, driver, CPU). The weights are the architecture's random initialisation (throughput does
# not depend on them), so the CLI runs end NOT REPRODUCED (exit 1), which is expected here.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
MODEL=${MODEL:-senet154}
DEVICE=${DEVICE:-cuda}
N=${N:-4000}
BS=${BS:-128}
CORES=$(nproc)
WORKERS=${WORKERS:-$(( CORES > 2 ? CORES - 2 : 1 ))}
DATA=${DATA:-/tmp/senet-zoo-gpu-bench}
OUT=${OUT:-runs/bench-gpu}
mkdir -p "$OUT" "$DATA"

{
  date -u +%FT%TZ
  echo "cpu cores: $CORES, workers: $WORKERS, batch: $BS, images: $N, model: $MODEL, device: $DEVICE"
  lscpu 2>/dev/null | grep -E "Model name" || true
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
  $PY -c "import torch, cv2, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'opencv', cv2.__version__, 'timm', timm.__version__)"
} | tee "$OUT/env.txt"

# 1. Input pipeline (no model) with 1 worker and all workers, then end to end, fp32 and bf16: ours vs timm.
$PY benchmarks/validate.py --device "$DEVICE" --model "$MODEL" --data "$DATA" \
    --images "$N" --e2e-images "$N" --batch-size "$BS" --workers 1 "$WORKERS" \
    --precision fp32 bf16 --repeat 1 --json "$OUT/bench.json" | tee "$OUT/bench.txt"

# 2. The real command on the same images (ImageFolder tree written by step 1), exact and --amp.
WEIGHTS="$DATA/weights-$MODEL"
if [ ! -f "$WEIGHTS/model.safetensors" ]; then
  $PY - "$MODEL" "$WEIGHTS" <<'EOF'
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import senet_zoo

name, dest = sys.argv[1], Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
model = senet_zoo.create_model(name)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dest / "model.safetensors"),
          metadata={"format": "pt", "model": name})
print("random-init weights:", dest)
EOF
fi
for AMP in "" "--amp"; do
  TAG=$([ -z "$AMP" ] && echo fp32 || echo bf16)
  set +e
  $PY -m senet_zoo validate --model "$MODEL" --weights "$WEIGHTS" --data "$DATA/e2e-$N" --device "$DEVICE" \
      --batch-size "$BS" --workers "$WORKERS" --output "$OUT/cli-$TAG.json" --no-progress $AMP
  rc=$?
  set -e
  if [ "$rc" -gt 1 ]; then echo "validate failed (exit $rc)"; exit "$rc"; fi
  $PY -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"CLI {r['precision']}: {r['results']['num_images']} images, {r['images_per_s']:.1f} img/s, wall {r['wall_time_s']:.1f}s on {r['environment']['gpu'] or r['environment']['device']}\")" "$OUT/cli-$TAG.json" | tee -a "$OUT/bench.txt"
done
echo "figures: $OUT/bench.txt, $OUT/bench.json"
