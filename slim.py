"""Make a trained model faster: ``python slim.py --weights runs/train/exp/weights/best.pt --data data/aquarium.yaml
--speedup 1.5``.

A speed budget (``--speedup``, ``--target-latency``: batch-1 latency measured against the source in
``--latency-backend``) weighs every knob: channel slimming, a smaller input size, INT8 (ONNX Runtime, OpenVINO) and
milder combinations of them are screened, the best of each kind fine-tuned alike, and the most accurate model that
meets the budget as measured is chosen and exported at its own input size (search.md/json/png, chosen/). The report
(report.md/json/png) compares it with the source on val, test and latency in three runtimes.

``--search off`` (and every ``--target-gflops``/``--target-params`` budget) slims alone: 3 Taylor steps
(BN-recalibrated, 2 epochs of fine-tuning between them), then a fine-tune until val stops improving, the same report.
``--max-map-drop D`` stops before a step whose val mAP50-95 falls more than D below the source's. Each stage is a normal
prune.py / train.py / export.py / val.py run in ``<project>/<name>/`` (logs in ``logs/``); the same command resumes an
interrupted run.
"""

from __future__ import annotations

from engine.slim.run import SlimOptions
from engine.slim.run import run as slim
from utils.cli import Flags, python_api, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> SlimOptions:
    """Parse slim.py's flags (declared on SlimOptions) into SlimOptions; a bad flag exits with the usage line."""
    return parse_options(SlimOptions, argv, "slim.py", __doc__)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and slim."""
    return slim(parse_opt(argv))


run = python_api(main, "slim.py", 'slim.run(weights="best.pt", data="data/aquarium.yaml", speedup=1.5)')


if __name__ == "__main__":
    run_script(main)
