"""Export a detector to TorchScript, ONNX and/or OpenVINO:
``python export.py --weights yolov5n.pt --include torchscript onnx openvino --imgsz 640``."""

from __future__ import annotations

import argparse

from engine.export import EXPORT_FORMATS, ExportOptions, run as export
from engine.exporters.onnx_export import DEFAULT_OPSET
from utils.cli import Flags, ScriptParser, check_common_flags, python_api, run_script


def parse_opt(argv: Flags = None) -> ExportOptions:
    """Parse export.py's flags (YOLOv5's) into ExportOptions: a command line (bad flags exit with the usage line) or
    ``run``'s keyword arguments (bad flags raise FlagError)."""
    d = ExportOptions()
    p = ScriptParser(prog="export.py", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", type=str, default=d.weights, help="model checkpoint (.pt, pruned .pt)")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=d.imgsz, help="image (h, w)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="batch size")
    p.add_argument("--device", default=d.device, help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--include", nargs="+", default=d.include, help=f"formats: {', '.join(EXPORT_FORMATS)}")
    p.add_argument("--half", action="store_true", help="FP16: ONNX/TorchScript traced in float16 (CUDA only); "
                   "OpenVINO weights compressed to float16 (any device)")
    p.add_argument("--inplace", action="store_true", help="set Detect() inplace=True")
    p.add_argument("--dynamic", action="store_true", help="ONNX/OpenVINO: dynamic batch and image size axes")
    p.add_argument("--simplify", action="store_true", help="ONNX: simplify the model with onnxslim")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX: opset version")
    p.add_argument("--int8", action="store_true", help="ONNX: also write an INT8 model (ONNX Runtime static "
                   "quantization, calibrated on --data) and report its mAP and latency next to FP32")
    p.add_argument("--int8-method", default=d.int8_method, choices=("percentile", "minmax", "entropy"),
                   help="INT8 calibration: percentile (most accurate here), minmax (fastest) or entropy")
    p.add_argument("--data", type=str, default=d.data, help="dataset.yaml for INT8 calibration and the INT8 report")
    a = p.parse_flags(argv)
    check_common_flags(p, a)
    if len(a.imgsz) > 2:
        p.error(f"--imgsz takes one size or two (height width), got {a.imgsz}")
    return ExportOptions(**vars(a))


def main(argv: Flags = None) -> dict:
    """Entry point: parse flags and export."""
    return export(parse_opt(argv))


run = python_api(main, "export.py", 'export.run(weights="yolov5n.pt", include=["onnx"], imgsz=640)')


if __name__ == "__main__":
    run_script(main)
