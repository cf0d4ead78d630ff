"""Validate a detector on a dataset: ``python val.py --weights yolov5n.pt --data data/coco128.yaml --imgsz 640``."""

from __future__ import annotations

import argparse

from engine.validator import ValOptions, run as validate
from utils.cli import Flags, ScriptParser, check_common_flags, python_api, run_script


def parse_opt(argv: Flags = None) -> ValOptions:
    """Parse val.py's flags (YOLOv5's) into ValOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    d = ValOptions()
    p = ScriptParser(prog="val.py", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=str, default=d.data, help="dataset.yaml path")
    p.add_argument("--weights", type=str, default=d.weights,
                   help="model path: .pt (official, ours or pruned), .torchscript, .onnx or OpenVINO (.xml / folder)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=d.imgsz, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=d.conf_thres, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=d.iou_thres, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=d.max_det, help="maximum detections per image")
    p.add_argument("--task", default=d.task, choices=("train", "val", "test", "speed"), help="split, or 'speed'")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--workers", type=int, default=d.workers, help="max dataloader workers")
    p.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    p.add_argument("--verbose", action="store_true", help="report mAP by class")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file (scored if annotations)")
    p.add_argument("--project", default=d.project, help="save to project/name")
    p.add_argument("--name", default=d.name, help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    p.add_argument("--prune", type=float, default=d.prune,
                   help="zero this share of the smallest conv weights before validating (unstructured sparsity check)")
    a = p.parse_flags(argv)
    check_common_flags(p, a)
    if not 0 <= a.prune < 1:
        p.error(f"--prune must be in [0, 1), got {a.prune}")
    return ValOptions(**vars(a))


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and run validation."""
    return validate(parse_opt(argv))


run = python_api(main, "val.py", 'val.run(weights="yolov5n.pt", data="data/coco128.yaml", imgsz=640)')


if __name__ == "__main__":
    run_script(main)
