"""Compare checkpoints on one dataset and machine (params, GFLOPs, size, mAP, CPU latency):
``python benchmarks/compare.py --weights yolov5n.pt runs/train/exp/weights/best.pt --labels base pruned``."""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compare import CompareOptions, compare_models, format_table  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.options import parse_options  # noqa: E402


def parse_opt(argv: list[str] | None = None) -> CompareOptions:
    """Parse the command line into CompareOptions (its flags are declared there)."""
    return parse_options(CompareOptions, argv, "compare.py", __doc__)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags, compare, print a Markdown table."""
    rows = compare_models(parse_opt(argv))
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    run_script(main)
