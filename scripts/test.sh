#!/usr/bin/env bash
# The test command: set up .venv (requirements.txt, then the optional extras that tests cover), then run the whole
# suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The extras (requirements-extra.txt: Ray for sweep.py --backend ray) are optional for users but tested here.
# Idempotent like setup.sh: installed once, again only when the file changes.
if ! .venv/bin/python -c "import ray" 2>/dev/null || [ requirements-extra.txt -nt .venv/.installed-extra ]; then
  .venv/bin/python -m pip install --quiet -r requirements-extra.txt
  touch .venv/.installed-extra
fi
# One torch/OpenMP thread per process: tests start several processes (torchrun, dataloader workers), and two
# spinning OpenMP threads per process on 2 cores made the suite 5-8x slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --durations=40 "$@"
