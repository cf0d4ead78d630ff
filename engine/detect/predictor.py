"""Detection on images and videos: ``run`` is ``detect.py``."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.backends import load_backend
from utils.boxes import scale_boxes, xyxy2xywh
from utils.data import LoadImages, LoadStreams, is_stream, source_name
from utils.nms import non_max_suppression
from utils.options import at_least, imgsz_opt, in_range, not_a_file, opt
from utils.paths import increment_path
from utils.plots import Annotator, colors, save_one_box
from utils.torch_utils import select_device, time_sync

__all__ = ["DetectOptions", "run", "describe_counts"]

LOGGER = logging.getLogger(__name__)


@dataclass
class DetectOptions:
    """detect.py's options (YOLOv5 flag names): each field declares its flags, help text and range check once;
    detect.py's parser is generated from it (:mod:`utils.options`)."""

    weights: str = opt("yolov5s.pt", "--weights",
                       help="model path: .pt (official, ours or pruned), .torchscript, .onnx or OpenVINO (.xml / "
                            "folder)")
    source: str = opt("data/images", "--source",
                      help="file/dir/glob/video/.txt list, image or video URL, rtsp/rtmp/http stream, or webcam index "
                           "(0)")
    imgsz: int = imgsz_opt(0, "inference size (pixels); 0: the model's own (the size an export was made at, else 640)",
                           minimum=0, note="0: the model's own")
    conf_thres: float = opt(0.25, "--conf-thres", help="confidence threshold", check=in_range(0, 1, closed=True))
    iou_thres: float = opt(0.45, "--iou-thres", help="NMS IoU threshold", check=in_range(0, 1, closed=True))
    max_det: int = opt(1000, "--max-det", help="maximum detections per image", check=at_least(1))
    device: str = opt("", "--device", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    save_txt: bool = opt(False, "--save-txt", help="save results to *.txt")
    save_conf: bool = opt(False, "--save-conf", help="save confidences in --save-txt labels")
    save_crop: bool = opt(False, "--save-crop", help="save cropped prediction boxes")
    nosave: bool = opt(False, "--nosave", help="do not save images/videos")
    classes: list[int] | None = opt(None, "--classes", nargs="+", type=int,
                                    help="filter by class: --classes 0, or --classes 0 2 3")
    agnostic_nms: bool = opt(False, "--agnostic-nms", help="class-agnostic NMS")
    project: str = opt("runs/detect", "--project", help="save results to project/name", check=not_a_file)
    name: str = opt("exp", "--name", help="save results to project/name")
    exist_ok: bool = opt(False, "--exist-ok", help="existing project/name ok, do not increment")
    line_thickness: int = opt(3, "--line-thickness", help="bounding box thickness (pixels)", check=at_least(1))
    hide_labels: bool = opt(False, "--hide-labels", help="hide labels")
    hide_conf: bool = opt(False, "--hide-conf", help="hide confidences")
    half: bool = opt(False, "--half", help="use FP16 half-precision inference (CUDA only)")
    vid_stride: int = opt(1, "--vid-stride", help="video frame-rate stride")


def describe_counts(det: torch.Tensor, names: list[str]) -> str:
    """'4 persons, 1 bus' for the detections of one image ('(no detections)' when empty)."""
    if not len(det):
        return "(no detections)"
    parts = []
    for c in det[:, 5].unique():
        n = int((det[:, 5] == c).sum())
        parts.append(f"{n} {names[int(c)]}{'s' * (n > 1)}")
    return ", ".join(parts)


class _VideoSink:
    """One cv2.VideoWriter per source video, opened lazily with the source's fps and frame size."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.writer: cv2.VideoWriter | None = None

    def write(self, save_path: Path, frame: np.ndarray, cap: cv2.VideoCapture | None) -> None:
        out = str(Path(save_path).with_suffix(".mp4"))
        if self.path != out:
            self.close()
            fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None else 30
            h, w = frame.shape[:2]
            self.path = out
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), fps or 30, (w, h))
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.writer, self.path = None, None


def run(opt: DetectOptions) -> dict:
    """detect.py: annotate images/videos into ``runs/detect/exp*`` and return a summary dict (also ``results.json``).

    ``opt.source`` is anything :class:`LoadImages` reads (files, folders, globs, ``.txt`` lists, an http(s) image or
    video URL) or a live source :class:`LoadStreams` reads (webcam index, RTSP/RTMP/HTTP stream), which runs until
    it ends or Ctrl-C; either way the outputs so far are closed and the summary written.
    """
    device = select_device(opt.device)
    model = load_backend(opt.weights, device=device)
    half = opt.half and device.type == "cuda"
    if half:
        model.half()
    names, stride = model.names, model.stride
    # Static exports take exactly their exported shape: full letterbox to it instead of the minimal rectangle.
    imgsz = model.input_size(opt.imgsz)
    loader = LoadStreams if is_stream(opt.source) else LoadImages
    dataset = loader(opt.source, img_size=imgsz, stride=stride, auto=model.dynamic, vid_stride=opt.vid_stride)
    # Made only once the weights load and the source opens, so a failed call leaves no empty run dir behind.
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    if opt.save_txt:
        (save_dir / "labels").mkdir(exist_ok=True)
    sink = _VideoSink()
    summary: dict = {"source": str(opt.source), "weights": str(opt.weights), "save_dir": str(save_dir), "imgsz": imgsz,
                     "images": []}
    dt = np.zeros(3)
    seen = 0
    try:
        for path, im, im0, cap, info in dataset:
            t0 = time_sync()
            x = torch.from_numpy(im).to(device)
            x = (x.half() if half else x.float())[None] / 255
            t1 = time_sync()
            with torch.inference_mode():
                pred = model(x)[0]
            t2 = time_sync()
            det = non_max_suppression(pred, opt.conf_thres, opt.iou_thres, opt.classes, opt.agnostic_nms,
                                      max_det=opt.max_det)[0]
            t3 = time_sync()
            dt += (t1 - t0, t2 - t1, t3 - t2)
            seen += 1
            det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
            p = Path(source_name(path))  # URLs and webcams get a file name, local files keep theirs
            frame_tag = f"_{dataset.frame}" if dataset.mode == "video" else ""
            _save_outputs(opt, det, names, im0, p, save_dir, frame_tag, sink if frame_tag else None, cap)
            print(f"{info}{x.shape[2]}x{x.shape[3]} {describe_counts(det, names)}, {(t2 - t1) * 1e3:.1f}ms")
            summary["images"].append(_record(path, dataset.frame if dataset.mode == "video" else None, det, names))
    except KeyboardInterrupt:  # how a live source is stopped: keep what was detected so far
        if loader is not LoadStreams:
            raise
        print(f"Stopped after {seen} frames")
    finally:
        sink.close()
        dataset.close()
    skipped = getattr(dataset, "skipped", [])
    if skipped:
        listed = "; ".join(f"{f} ({why})" for f, why in skipped[:10]) + ("; ..." if len(skipped) > 10 else "")
        if not seen:  # nothing was detected on: a failure, not an empty success
            if not any(f.is_file() for f in save_dir.rglob("*")):
                shutil.rmtree(save_dir)  # no empty run folder left behind to be mistaken for a result
            raise ValueError(f"--source {opt.source}: every input was skipped ({len(skipped)}): {listed}")
        print(f"Skipped {len(skipped)} input(s): {listed}")
        summary["skipped"] = [{"path": f, "why": why} for f, why in skipped]
    t = tuple(1e3 * dt / max(seen, 1))
    summary["speed"] = dict(zip(("preprocess", "inference", "nms"), t))
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    print(f"Speed: {t[0]:.1f}ms pre-process, {t[1]:.1f}ms inference, {t[2]:.1f}ms NMS per image at shape "
          f"(1, 3, {h}, {w})")
    (save_dir / "results.json").write_text(json.dumps(summary, indent=1))
    print(f"Results saved to {save_dir}")
    return summary


def _record(path: str, frame: int | None, det: torch.Tensor, names: list[str]) -> dict:
    """One image's (or frame's) entry in results.json."""
    return {"path": str(path), "frame": frame,
            "detections": [{"class": int(c), "name": names[int(c)], "conf": round(float(cf), 4),
                            "xyxy": [float(v) for v in b]} for *b, cf, c in det.tolist()]}


def _save_outputs(opt: DetectOptions, det: torch.Tensor, names: list[str], im0: np.ndarray, p: Path, save_dir: Path,
                  frame_tag: str, sink: _VideoSink | None, cap: cv2.VideoCapture | None) -> None:
    raw = im0.copy() if opt.save_crop else im0
    annotator = Annotator(im0, line_width=opt.line_thickness, example=str(names))
    gn = torch.tensor(im0.shape)[[1, 0, 1, 0]]
    for *xyxy, conf, cls in reversed(det.tolist()):
        c = int(cls)
        if opt.save_txt:
            xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
            row = (c, *xywh, conf) if opt.save_conf else (c, *xywh)
            with open(save_dir / "labels" / f"{p.stem}{frame_tag}.txt", "a") as f:
                f.write(("%g " * len(row)).rstrip() % row + "\n")
        if not opt.nosave:
            label = None if opt.hide_labels else (names[c] if opt.hide_conf else f"{names[c]} {conf:.2f}")
            annotator.box_label(xyxy, label or "", color=colors(c, True))
        if opt.save_crop:
            save_one_box(xyxy, raw, file=save_dir / "crops" / names[c] / f"{p.stem}.jpg", BGR=True)
    if opt.nosave:
        return
    if sink is None:
        cv2.imwrite(str(save_dir / p.name), annotator.result())
    else:
        sink.write(save_dir / p.name, annotator.result(), cap)
