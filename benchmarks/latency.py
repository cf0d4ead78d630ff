"""Measure batch-1 and batch-N forward latency in PyTorch, ONNX Runtime (FP32, INT8) and OpenVINO:
``python benchmarks/latency.py --weights yolov5n.pt --onnx --int8 --openvino --imgsz 320 640 --batch-size 1 8``.

Any mix of .pt, .torchscript, .onnx and OpenVINO (.xml or _openvino_model folder) files can be timed; ``--onnx``
also exports each .pt to a temporary dynamic ONNX model, ``--int8`` quantizes that (calibrated on ``--data``), and
``--openvino`` exports each .pt to a temporary OpenVINO IR. Prints median and spread per row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.benchmark import LatencyOptions, run  # noqa: E402
from utils.cli import run_script  # noqa: E402
from utils.options import parse_options  # noqa: E402


def parse_opt(argv: list[str] | None = None) -> LatencyOptions:
    """Parse the benchmark's command line into LatencyOptions (its flags are declared there)."""
    return parse_options(LatencyOptions, argv, "latency.py", __doc__, argparse.ArgumentDefaultsHelpFormatter)


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point: parse flags and run the benchmark."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
