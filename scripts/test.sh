#!/usr/bin/env bash
# The test command: set up .venv, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One torch/OpenMP thread per process: tests start several processes (torchrun, dataloader workers), and two
# spinning OpenMP threads per process on 2 cores made the suite 5-8x slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=40 "$@"
