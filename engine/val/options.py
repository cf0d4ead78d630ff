"""val.py's options (YOLOv5 flag names) as a dataclass: each field declares its flags, help text and range check once;
val.py's parser is generated from it (:mod:`utils.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from utils.options import at_least, imgsz_opt, in_range, not_a_file, opt

__all__ = ["CONF_THRES", "IOU_THRES", "ValOptions"]

# YOLOv5's mAP thresholds: a low confidence keeps the whole precision-recall curve; mAPs at other values differ.
CONF_THRES = 0.001
IOU_THRES = 0.6


@dataclass
class ValOptions:
    """val.py's options (YOLOv5 flag names)."""

    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml path")
    weights: str = opt("yolov5s.pt", "--weights",
                       help="model path: .pt (official, ours or pruned), .torchscript, .onnx or OpenVINO (.xml / "
                            "folder)")
    batch_size: int = opt(32, "--batch-size", help="batch size", check=at_least(1))
    imgsz: int = imgsz_opt(0, "inference size (pixels); 0: the model's own (the size an export was made at, else 640)",
                           minimum=0, note="0: the model's own")
    conf_thres: float = opt(CONF_THRES, "--conf-thres", help="confidence threshold", check=in_range(0, 1, closed=True))
    iou_thres: float = opt(IOU_THRES, "--iou-thres", help="NMS IoU threshold", check=in_range(0, 1, closed=True))
    max_det: int = opt(300, "--max-det", help="maximum detections per image", check=at_least(1))
    task: str = opt("val", "--task", choices=("train", "val", "test", "speed"), help="split, or 'speed'")
    device: str = opt("", "--device", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    workers: int = opt(8, "--workers", help="max dataloader workers", check=at_least(0))
    single_cls: bool = opt(False, "--single-cls", help="treat as single-class dataset")
    verbose: bool = opt(False, "--verbose", help="report mAP by class")
    save_txt: bool = opt(False, "--save-txt", help="save results to *.txt")
    save_conf: bool = opt(False, "--save-conf", help="save confidences in --save-txt labels")
    save_json: bool = opt(False, "--save-json", help="save a COCO-JSON results file (scored if annotations)")
    project: str = opt("runs/val", "--project", help="save to project/name", check=not_a_file)
    name: str = opt("exp", "--name", help="save to project/name")
    exist_ok: bool = opt(False, "--exist-ok", help="existing project/name ok, do not increment")
    half: bool = opt(False, "--half", help="use FP16 half-precision inference (CUDA only)")
    prune: float = opt(0.0, "--prune", check=in_range(0, 1),
                       help="zero this share of the smallest conv weights before validating (unstructured sparsity "
                            "check)")
    noplots: bool = False  # no flag: no PR/F1/P/R curves, confusion matrix or val_batch*.jpg (train.py's --noplots)
