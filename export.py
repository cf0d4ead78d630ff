"""Export a detector to TorchScript, ONNX and/or OpenVINO:
``python export.py --weights yolov5n.pt --include torchscript onnx openvino --imgsz 640``."""

from __future__ import annotations

import argparse

from engine.export.run import ExportOptions, run as export
from utils.cli import Flags, python_api, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> ExportOptions:
    """Parse export.py's flags (YOLOv5's, declared on ExportOptions) into ExportOptions: a command line (bad flags
    exit with the usage line) or ``run``'s keyword arguments (bad flags raise FlagError)."""
    return parse_options(ExportOptions, argv, "export.py", __doc__, argparse.ArgumentDefaultsHelpFormatter)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and export."""
    return export(parse_opt(argv))


run = python_api(main, "export.py", 'export.run(weights="yolov5n.pt", include=["onnx"], imgsz=640)')


if __name__ == "__main__":
    run_script(main)
