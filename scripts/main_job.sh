#!/usr/bin/env bash
# The main job: the network-slimming recipe on aquarium (a small custom dataset of the kind users fine-tune a COCO model
# on), ending with a before/after table: yolov5n.pt sparsity-trained with --sparsity_rate auto targeted at the 60% of
# the channels the loss needs least (Taylor importance), pruned there (kept channels in multiples of 8, BN-recalibrated),
# fine-tuned, exported to ONNX and INT8, against an unpruned fine-tune of the same total epochs, all validated and
# timed on this machine. 19 minutes measured on this 2-core CPU with the defaults (1141 s, .venv already installed).
# Override with env: EPOCHS_SPARSE, EPOCHS_FT, PERCENT, IMGSZ, DATA, BASELINES (all | reference | none), NAME.
# The full study behind the README's figures: python benchmarks/slimming.py (see docs/slimming/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
E1="${EPOCHS_SPARSE:-8}" E2="${EPOCHS_FT:-8}" PC="${PERCENT:-0.6}" IMG="${IMGSZ:-320}" DATA="${DATA:-data/aquarium.yaml}"
BASELINES="${BASELINES:-reference}" NAME="${NAME:-aquarium}"
set -x
$PY benchmarks/slimming.py --data "$DATA" --imgsz "$IMG" --epochs "$E1" --ft-epochs "$E2" --percents "$PC" --sparsity-target "$PC" \
  --baselines "$BASELINES" --project runs/main_job --name "$NAME"
