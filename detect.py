"""Run detection on images, folders, globs, videos or .txt lists, an http(s) image or video URL, an RTSP/RTMP/HTTP
stream or a webcam (``--source 0``): ``python detect.py --weights yolov5n.pt --source ../shared/images/``."""

from __future__ import annotations

import argparse

from engine.detect.predictor import DetectOptions, run as detect
from utils.cli import Flags, python_api, run_script
from utils.options import parse_options


def parse_opt(argv: Flags = None) -> DetectOptions:
    """Parse detect.py's flags (YOLOv5's, declared on DetectOptions) into DetectOptions: a command line (bad flags
    exit with the usage line) or ``run``'s keyword arguments (bad flags raise FlagError)."""
    return parse_options(DetectOptions, argv, "detect.py", __doc__, argparse.ArgumentDefaultsHelpFormatter)


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and run detection."""
    return detect(parse_opt(argv))


run = python_api(main, "detect.py", 'detect.run(weights="yolov5n.pt", source="../shared/images/bus.jpg")')


if __name__ == "__main__":
    run_script(main)
