#!/usr/bin/env bash
# The main job: what a user does with their own data. yolov5n.pt is fine-tuned on aquarium (a small custom dataset; the
# "source"), then slim.py makes it 1.5x faster with its defaults (Taylor steps with BN recalibration, a final
# fine-tune that stops when val stops improving) and ends with the before/after table: parameters, GFLOPs, val and test
# mAP, latency in ONNX Runtime, OpenVINO and PyTorch, all measured here. Its last line is the run folder, which holds
# report.md/json/png and the exported model. Each stage shows one live progress line; full logs go to
# runs/main_job/<NAME>/logs and runs/main_job/<NAME>/slim/logs.
# Override with env: EPOCHS (source fine-tune, default 20), SPEEDUP, IMGSZ, DATA, NAME; longer runs give better models
# (the README's figures come from a 40-epoch source: EPOCHS=40). The same command resumes an interrupted job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/main_job.py
