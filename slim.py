"""Iterative slimming: prune towards a budget in K steps, BN-recalibrated and briefly fine-tuned between steps:
``python slim.py --weights runs/train/sparsity/weights/best.pt --data data/aquarium.yaml --target-gflops 0.6
--steps 3 --ft-epochs 2``.

Each step is a normal prune.py / train.py run in ``<project>/<name>/step<k>_*`` (logs in ``logs/``); the same command
resumes an interrupted run. ``--max-map-drop D`` stops before the step whose val mAP50-95 falls more than D below the
source model's, and keeps the last step that did not. Writes ``steps.md`` and ``steps.json``.
"""

from __future__ import annotations

from engine.slimming.iterative import SlimOptions, run
from utils.cli import Flags, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> SlimOptions:
    """Parse slim.py's flags (declared on SlimOptions) into SlimOptions; a bad flag exits with the usage line."""
    return parse_options(SlimOptions, argv, "slim.py", __doc__)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and slim."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
