#!/usr/bin/env bash
# The main job: the network-slimming recipe on coco128 with short epoch counts (about 15 minutes on a 2-core CPU),
# ending with a before/after table. Override with env: EPOCHS_SPARSE, EPOCHS_FT, SPARSITY_RATE, PERCENT, IMGSZ, NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
E1="${EPOCHS_SPARSE:-10}" E2="${EPOCHS_FT:-10}" S="${SPARSITY_RATE:-0.03}" PC="${PERCENT:-0.25}" IMG="${IMGSZ:-320}"
NAME="${NAME:-coco128}"
set -x
# 1 sparsity training
$PY train.py --weights yolov5n.pt --data data/coco128.yaml --imgsz "$IMG" --epochs "$E1" --noval \
  --bn_sparsity --sparsity_rate "$S" --name "sparsity_$NAME" --exist-ok
# 2 prune
$PY prune.py --weights "runs/train/sparsity_$NAME/weights/best.pt" --data data/coco128.yaml --percent "$PC" \
  --imgsz "$IMG" --name "prune_$NAME" --exist-ok
# 3 fine-tune the pruned model
$PY train.py --weights "runs/prune/prune_$NAME/pruned_model.pt" --data data/coco128.yaml --imgsz "$IMG" \
  --epochs "$E2" --noval --ft_pruned_model --hyp hyp.finetune_prune.yaml --name "finetune_$NAME" --exist-ok
# before/after
$PY benchmarks/compare.py --weights yolov5n.pt "runs/prune/prune_$NAME/pruned_model.pt" \
  "runs/train/finetune_$NAME/weights/best.pt" --labels yolov5n pruned pruned+finetuned --imgsz "$IMG" \
  --json "runs/compare_$NAME.json"
