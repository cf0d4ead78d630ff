"""Run detection on images, folders, globs, videos or .txt lists, an http(s) image or video URL, an RTSP/RTMP/HTTP
stream or a webcam (``--source 0``): ``python detect.py --weights yolov5n.pt --source ../shared/images/``."""

from __future__ import annotations

import argparse

from engine.predictor import DetectOptions, run as detect
from utils.cli import Flags, ScriptParser, check_common_flags, python_api, run_script


def parse_opt(argv: Flags = None) -> DetectOptions:
    """Parse detect.py's flags (YOLOv5's) into DetectOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    d = DetectOptions()
    p = ScriptParser(prog="detect.py", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", type=str, default=d.weights,
                   help="model path: .pt (official, ours or pruned), .torchscript, .onnx or OpenVINO (.xml / folder)")
    p.add_argument("--source", type=str, default=d.source,
                   help="file/dir/glob/video/.txt list, image or video URL, rtsp/rtmp/http stream, or webcam index (0)")
    p.add_argument("--imgsz", "--img", "--img-size", type=int, default=d.imgsz, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=float, default=d.conf_thres, help="confidence threshold")
    p.add_argument("--iou-thres", type=float, default=d.iou_thres, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=d.max_det, help="maximum detections per image")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--project", default=d.project, help="save results to project/name")
    p.add_argument("--name", default=d.name, help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--line-thickness", default=d.line_thickness, type=int, help="bounding box thickness (pixels)")
    p.add_argument("--hide-labels", action="store_true", help="hide labels")
    p.add_argument("--hide-conf", action="store_true", help="hide confidences")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    p.add_argument("--vid-stride", type=int, default=d.vid_stride, help="video frame-rate stride")
    a = p.parse_flags(argv)
    check_common_flags(p, a)
    return DetectOptions(**vars(a))


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and run detection."""
    return detect(parse_opt(argv))


run = python_api(main, "detect.py", 'detect.run(weights="yolov5n.pt", source="../shared/images/bus.jpg")')


if __name__ == "__main__":
    run_script(main)
