#!/usr/bin/env bash
# The main job: what a user does with their own data. yolov5n.pt is fine-tuned on aquarium (a small custom dataset; the
# "source"), then slim.py makes it 1.5x faster with its defaults (Taylor steps with BN recalibration, a final
# fine-tune that stops when val stops improving) and ends with the before/after table: parameters, GFLOPs, val and test
# mAP, latency in ONNX Runtime, OpenVINO and PyTorch, all measured here. Its last line is the run folder, which holds
# report.md/json/png and the exported model.
# About 30 minutes on a 2-core CPU with the defaults (measured: see README), plus the installs on a fresh machine.
# Override with env: EPOCHS (source fine-tune), SPEEDUP, IMGSZ, DATA, NAME; longer runs give better models (the
# README's figures come from a 40-epoch source: EPOCHS=40). The same command resumes an interrupted job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
EPOCHS="${EPOCHS:-20}" SPEEDUP="${SPEEDUP:-1.5}" IMG="${IMGSZ:-320}" DATA="${DATA:-data/aquarium.yaml}"
NAME="${NAME:-aquarium}"
ROOT="runs/main_job/$NAME"
# 22 s an epoch for yolov5n at 320 px on aquarium here; the slimmed network's final fine-tune runs at most 1.5x the
# source's epochs, with validation, plus ~8 minutes for the prune steps, their short fine-tunes and the report.
echo "main job: fine-tune yolov5n.pt on $DATA for $EPOCHS epochs, then slim.py --speedup $SPEEDUP; expected about" \
  "$(( (EPOCHS * 22 + EPOCHS * 3 / 2 * 27) / 60 + 8 )) minutes on a 2-core CPU at 320 px (less on a GPU)"
SOURCE="$ROOT/source"
if [ ! -f "$SOURCE/results.json" ]; then
  if [ -f "$SOURCE/weights/last.pt" ]; then
    $PY train.py --resume "$SOURCE/weights/last.pt"
  else
    $PY train.py --weights yolov5n.pt --data "$DATA" --imgsz "$IMG" --epochs "$EPOCHS" --batch-size 16 --workers 2 \
      --noval --project "$ROOT" --name source --exist-ok
  fi
fi
$PY slim.py --weights "$SOURCE/weights/best.pt" --data "$DATA" --imgsz "$IMG" --speedup "$SPEEDUP" \
  --project "$ROOT" --name slim
echo "main job: report in $ROOT/slim (report.md, report.json, report.png; exported model in $ROOT/slim/export)"
echo "$ROOT/slim"
