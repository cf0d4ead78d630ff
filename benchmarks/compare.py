"""Compare checkpoints on one dataset and machine (params, GFLOPs, size, mAP, CPU latency):
``python benchmarks/compare.py --weights yolov5n.pt runs/train/exp/weights/best.pt --labels base pruned``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compare import CompareOptions, compare_models, format_table  # noqa: E402
from utils.cli import run_script  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags, compare, print a Markdown table."""
    d = CompareOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", required=True, help="checkpoints to compare (the first is the baseline)")
    p.add_argument("--labels", nargs="+", default=[], help="row names (default: file stems)")
    p.add_argument("--data", default=d.data, help="dataset.yaml")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="validation and latency image size")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="validation batch size")
    p.add_argument("--workers", type=int, default=d.workers, help="max dataloader workers")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed forward passes per model")
    p.add_argument("--json", default=d.json, help="also write the rows to this JSON file")
    rows = compare_models(CompareOptions(**vars(p.parse_args(argv))))
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    run_script(main)
