"""Validate a detector on a dataset: ``python val.py --weights yolov5n.pt --data data/coco128.yaml --imgsz 640``."""

from __future__ import annotations

import argparse

from engine.val.options import ValOptions
from engine.val.validator import run as validate
from utils.cli import Flags, python_api, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> ValOptions:
    """Parse val.py's flags (YOLOv5's, declared on ValOptions) into ValOptions: a command line (bad flags exit with
    the usage line) or ``run``'s keyword arguments (bad flags raise FlagError)."""
    return parse_options(ValOptions, argv, "val.py", __doc__, argparse.ArgumentDefaultsHelpFormatter)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and run validation."""
    return validate(parse_opt(argv))


run = python_api(main, "val.py", 'val.run(weights="yolov5n.pt", data="data/coco128.yaml", imgsz=640)')


if __name__ == "__main__":
    run_script(main)
