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


def parse_opt(argv: list[str] | None = None) -> LatencyOptions:
    """Parse the benchmark's command line into LatencyOptions."""
    d = LatencyOptions()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", nargs="+", default=d.weights, help="models to time (.pt, .torchscript, .onnx, "
                   ".xml / _openvino_model)")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=d.imgsz, help="square sizes")
    p.add_argument("--batch-size", nargs="+", type=int, default=d.batch_size, help="batch sizes")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed runs before timing")
    p.add_argument("--repeats", type=int, default=d.repeats, help="timed runs per row")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0, or cpu")
    p.add_argument("--onnx", action="store_true", help="also time a dynamic ONNX export of each .pt in ONNX Runtime")
    p.add_argument("--int8", action="store_true", help="also time its INT8 quantization (needs --onnx)")
    p.add_argument("--openvino", action="store_true", help="also time a dynamic OpenVINO export of each .pt")
    p.add_argument("--data", default=d.data, help="dataset.yaml for INT8 calibration images")
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads for PyTorch, ONNX Runtime and OpenVINO "
                   "(0: each runtime's default)")
    p.add_argument("--json", default=d.json, help="write the rows to this JSON file")
    a = p.parse_args(argv)
    if a.repeats < 1 or a.warmup < 0 or min(a.batch_size) < 1:
        p.error("--repeats and --batch-size must be >= 1 and --warmup >= 0")
    return LatencyOptions(**vars(a))


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point: parse flags and run the benchmark."""
    return run(parse_opt(argv))


if __name__ == "__main__":
    run_script(main)
