"""The network-slimming study on one dataset (default aquarium), resumable stage by stage:
``python benchmarks/slimming.py --data data/aquarium.yaml --epochs 20 --ft-epochs 20 --percents 0.5``.

Trains ``base`` (E epochs from the pretrained weights), ``reference`` (E + F epochs: the recipe's compute without
slimming), ``sparsity`` (E epochs, ``--sparsity_rate auto``, targeted at the channels a prune at ``--sparsity-target``
takes), prunes it at each percent (BN-recalibrated), fine-tunes
each pruned model F epochs, exports the best one to ONNX and INT8, validates every model on val and test with
val.py, times them all interleaved in PyTorch and ONNX Runtime, and writes ``<name>.md``, ``<name>.json`` and
``<name>.png`` (mAP50-95 against latency, Pareto front marked). Every stage is a normal run of our scripts in
``<project>/<name>/<stage>`` and is skipped when its outputs exist, so the same command resumes the study.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.study.options import SlimmingOptions  # noqa: E402
from engine.study.run import run  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.options import parse_options  # noqa: E402


def parse_opt(argv: list[str] | None = None) -> SlimmingOptions:
    """Parse the command line into SlimmingOptions (its flags are declared there)."""
    return parse_options(SlimmingOptions, argv, "slimming.py", __doc__)


def main(argv: list[str] | None = None) -> dict:
    """Parse flags and run (or resume) the study."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
