#!/usr/bin/env bash
# The paths our users run on a GPU, each checked once, one line per check, exit 1 if any failed (a few minutes on one
# GPU): train.py 1 epoch with AMP, val.py --half, prune.py, one slim.py step, export.py --half to ONNX and OpenVINO, and
# a two-process torchrun with NCCL when two GPUs are present.
#   bash scripts/gpu_check.sh                 # --device 0
#   bash scripts/gpu_check.sh --device cpu    # the same checks on the CPU (the test suite runs this, on tiny data)
# Env: DATA (default data/aquarium.yaml), IMGSZ (320), EPOCHS (1), OUT (runs/gpu_check). Logs: $OUT/<check>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="${2:?--device needs a value}"; shift 2 ;;
    *) echo "ERROR: unknown argument $1 (usage: bash scripts/gpu_check.sh [--device 0|cpu])" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-.venv/bin/python}"
DATA="${DATA:-data/aquarium.yaml}" IMG="${IMGSZ:-320}" EPOCHS="${EPOCHS:-1}" OUT="${OUT:-runs/gpu_check}"
rm -rf "$OUT" && mkdir -p "$OUT"
FAILED=0
check() {  # check NAME COMMAND...: run it, log it, print one line
  local name="$1"; shift
  local t0=$SECONDS
  if "$@" > "$OUT/$name.log" 2>&1; then
    echo "PASS  $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL  $name ($((SECONDS - t0)) s): $(grep -a -E '^ERROR|Error' "$OUT/$name.log" | tail -1 | cut -c1-200) (log: $OUT/$name.log)"
    FAILED=1
  fi
}
skip() { echo "SKIP  $1: $2"; }

check device "$PY" -c "
import sys, torch
from utils.torch_utils import select_device
d = select_device('$DEVICE')
print(d, torch.cuda.get_device_name(d) if d.type == 'cuda' else 'CPU')
sys.exit(0 if ('$DEVICE' == 'cpu') == (d.type == 'cpu') else 1)"
COMMON=(--data "$DATA" --imgsz "$IMG" --device "$DEVICE" --workers 2)
check train_amp "$PY" train.py --weights yolov5n.pt "${COMMON[@]}" --epochs "$EPOCHS" --batch-size 16 \
  --project "$OUT" --name train
BEST="$OUT/train/weights/best.pt"
if [ "$DEVICE" != cpu ]; then
  check train_amp_used grep -q "AMP: on" "$OUT/train_amp.log"
fi
check val_half "$PY" val.py --weights "$BEST" "${COMMON[@]}" --half --project "$OUT" --name val
check prune "$PY" prune.py --weights "$BEST" "${COMMON[@]}" --percent 0.3 --importance taylor --round 8 \
  --project "$OUT" --name prune
check slim_step "$PY" slim.py --weights "$BEST" "${COMMON[@]}" --target-gflops "$("$PY" -c "
from models.summary import count_flops; from models.checkpoint import load_model
print(round(0.8 * count_flops(load_model('$BEST')[0], $IMG), 6))")" --steps 1 --final-ft-epochs 1 --no-export \
  --project "$OUT" --name slim
if [ "$DEVICE" != cpu ]; then  # float16 ONNX is traced on CUDA only
  check export_half "$PY" export.py --weights "$BEST" --imgsz "$IMG" --device "$DEVICE" --half --include onnx openvino
else
  check export_half "$PY" export.py --weights "$BEST" --imgsz "$IMG" --device cpu --half --include openvino
  check export_onnx "$PY" export.py --weights "$BEST" --imgsz "$IMG" --device cpu --include onnx
fi
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if [ "$DEVICE" != cpu ] && [ "${GPUS:-0}" -ge 2 ]; then
  check torchrun_nccl "$PY" -m torch.distributed.run --nproc_per_node 2 train.py --weights yolov5n.pt --data "$DATA" \
    --imgsz "$IMG" --device 0,1 --epochs 1 --batch-size 32 --workers 2 --project "$OUT" --name ddp
else
  skip torchrun_nccl "needs two GPUs (found ${GPUS:-0})"
fi
[ "$FAILED" = 0 ] && echo "gpu_check: all checks passed on --device $DEVICE" || echo "gpu_check: some checks FAILED"
exit "$FAILED"
