"""export.py: a checkpoint to TorchScript, ONNX (optionally INT8) and/or OpenVINO, each file checked against PyTorch.

Exported files go next to the weights as in YOLOv5, or into the working directory when that folder is read-only.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Collection

import torch

from engine.backends import load_backend
from engine.benchmark import measure_latencies
from engine.export.common import normalize_imgsz, prepare_for_export
from engine.export.onnx_export import DEFAULT_OPSET, export_onnx
from engine.export.openvino_export import export_openvino
from engine.export.torchscript_export import export_torchscript
from engine.val.validator import scorer
from models.checkpoint import load_model
from models.summary import count_params
from utils.cli import FlagError
from utils.data import load_dataset_config
from utils.data.cache import is_writable_dir
from utils.options import at_least, imgsz_opt, opt
from utils.torch_utils import select_device

__all__ = ["ExportOptions", "EXPORT_FORMATS", "run", "output_dir_for"]

LOGGER = logging.getLogger(__name__)
EXPORT_FORMATS = {"torchscript": ".torchscript", "onnx": ".onnx", "openvino": "_openvino_model"}  # name suffixes


@dataclass
class ExportOptions:
    """export.py's options (YOLOv5 flag names): each flag field declares its flags, help text and range check once;
    export.py's parser is generated from it (:mod:`utils.options`). ``output_dir`` is for library callers (default:
    see module doc); ``int8_images``, ``int8_report`` and ``workers`` have no flag."""

    weights: str = opt("yolov5s.pt", "--weights", help="model checkpoint (.pt, pruned .pt)")
    imgsz: list[int] = imgsz_opt([640, 640], "image (h, w)", nargs="+")
    batch_size: int = opt(1, "--batch-size", help="batch size", check=at_least(1))
    device: str = opt("cpu", "--device", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    include: list[str] = opt(["torchscript"], "--include", nargs="+", type=str,
                             help=f"formats: {', '.join(EXPORT_FORMATS)}")
    half: bool = opt(False, "--half", help="FP16: ONNX/TorchScript traced in float16 (CUDA only); OpenVINO weights "
                                           "compressed to float16 (any device)")
    inplace: bool = opt(False, "--inplace", help="set Detect() inplace=True")
    dynamic: bool = opt(False, "--dynamic", help="ONNX/OpenVINO: dynamic batch and image size axes")
    simplify: bool = opt(False, "--simplify", help="ONNX: simplify the model with onnxslim")
    opset: int = opt(DEFAULT_OPSET, "--opset", help="ONNX: opset version")
    int8: bool = opt(False, "--int8", help="ONNX: also write an INT8 model (ONNX Runtime static quantization, "
                                           "calibrated on --data) and report its mAP and latency next to FP32")
    # listed before --data, as in export.py's help since YOLOv5's flags were first declared
    int8_method: str = opt("percentile", "--int8-method", choices=("percentile", "minmax", "entropy"),
                           help="INT8 calibration: percentile (most accurate here), minmax (fastest) or entropy")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml for INT8 calibration and the INT8 report")
    int8_images: int = 64
    int8_report: bool = True
    workers: int = 2
    output_dir: str | None = None

    def validate(self, given: Collection[str] = ()) -> None:
        """Checks across a flag's values: ``--imgsz`` is one size or two (height width).

        Raises:
            FlagError: naming the flag.
        """
        if len(self.imgsz) > 2:
            raise FlagError(f"--imgsz takes one size or two (height width), got {self.imgsz}")


def output_dir_for(weights: Path, output_dir: str | Path | None = None) -> Path:
    """``output_dir`` when given; else the weights' folder when writable; else the working directory (logged)."""
    if output_dir is not None:
        return Path(output_dir)

    if is_writable_dir(weights.parent, create=False):  # permission bits too: os.access says yes to root everywhere
        return weights.parent
    LOGGER.warning("%s is read-only: writing exported files to the working directory %s", weights.parent, Path.cwd())
    return Path.cwd()


def _check_options(opt: ExportOptions, device: torch.device) -> list[str]:
    include = list(dict.fromkeys(f.lower().lstrip(".") for f in opt.include))
    unknown = [f for f in include if f not in EXPORT_FORMATS]
    if unknown or not include:
        raise ValueError(f"--include {' '.join(opt.include) or '(empty)'}: unknown format(s) "
                         f"{', '.join(unknown) or '(none given)'}; valid formats: {', '.join(EXPORT_FORMATS)}")
    if opt.int8 and "onnx" not in include:
        raise ValueError("--int8 quantizes the ONNX model: add onnx to --include")
    if opt.int8 and opt.half:
        raise ValueError("--int8 and --half are exclusive: INT8 is quantized from the float32 ONNX model")
    fp16_traced = [f for f in include if f != "openvino"]
    if opt.half and device.type != "cuda" and fp16_traced:
        # As YOLOv5: a float16 trace needs CUDA (CPU kernels have no float16 version). OpenVINO only stores
        # float16 weights, which needs no GPU.
        raise ValueError(f"--half exports float16 {' and '.join(fp16_traced)} only on a CUDA device (--device 0), "
                         f"not on {device.type}; on the CPU --half applies to --include openvino alone "
                         "(FP16 weight compression)")
    needs = {"onnxslim": "--simplify"} if opt.simplify and "onnx" in include else {}
    if "openvino" in include:
        needs["openvino"] = "--include openvino"
    for module, flag in needs.items():  # refused before any work, not after a trace
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"{flag} needs {module}, which is not installed: pip install -r requirements.txt "
                             f"(or pip install {module})")
    if opt.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {opt.batch_size}")
    return include


def _image_size(imgsz: list[int], stride: int) -> tuple[int, int]:
    """(h, w) from ``--imgsz``, each rounded up to a multiple of ``stride`` (with a warning), as YOLOv5 does."""
    h, w = normalize_imgsz(imgsz)
    fixed = tuple(max(stride, -(-s // stride) * stride) for s in (h, w))
    if fixed != (h, w):
        LOGGER.warning("--imgsz %s must be a multiple of the max stride %d; using %s", imgsz, stride, list(fixed))
    return fixed


def run(opt: ExportOptions) -> dict[str, Any]:
    """export.py: load, fuse and export the model in each ``--include`` format, verify each file against PyTorch,
    quantize to INT8 with ``--int8``; print a summary and return it (also written as ``<stem>_export.json``)."""
    t0 = time.perf_counter()
    device = select_device(opt.device)
    include = _check_options(opt, device)
    model, _ = load_model(opt.weights, device=device)
    weights = Path(model.ckpt_path)
    imgsz = _image_size(opt.imgsz, int(model.stride.max()))
    out_dir = output_dir_for(weights, opt.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    traced_half = opt.half and device.type == "cuda"  # on the CPU --half is OpenVINO's alone (see _check_options)
    prepared = prepare_for_export(model, device, half=traced_half, inplace=opt.inplace)
    # OpenVINO converts a float32 graph and compresses the weights itself with --half
    prepared32 = prepare_for_export(model, device, inplace=opt.inplace) if traced_half else prepared
    n_params = count_params(prepared)
    print(f"PyTorch: starting from {weights} ({weights.stat().st_size / 2**20:.1f} MB, {n_params:,} parameters after "
          f"Conv+BN fusion), input {opt.batch_size}x3x{imgsz[0]}x{imgsz[1]}")
    summary: dict[str, Any] = {"weights": str(weights), "options": asdict(opt), "exports": []}
    for fmt in include:
        file = out_dir / (weights.stem + EXPORT_FORMATS[fmt])
        common = dict(imgsz=imgsz, batch_size=opt.batch_size, half=opt.half, device=device, prepared=True)
        if fmt == "onnx":
            res = export_onnx(prepared, file, dynamic=opt.dynamic, opset=opt.opset, simplify=opt.simplify, **common)
        elif fmt == "openvino":
            res = export_openvino(prepared32, file, dynamic=opt.dynamic, opset=opt.opset, **common)
        else:
            res = export_torchscript(prepared, file, **common)
        _print_export(res)
        summary["exports"].append(res)
    if opt.int8:
        onnx_res = next(r for r in summary["exports"] if r["format"] == "onnx")
        summary["int8"] = _int8(Path(onnx_res["file"]), imgsz, opt, device)
    summary["seconds"] = time.perf_counter() - t0
    report = out_dir / f"{weights.stem}_export.json"
    report.write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nExport complete ({summary['seconds']:.1f}s). Results saved to {out_dir.resolve()} "
          f"(summary {report.name})")
    for r in summary["exports"] + ([summary["int8"]["export"]] if opt.int8 else []):
        print(f"  Validate: python val.py --weights {r['file']}\n  Detect:   python detect.py --weights {r['file']}")
    return summary


def _print_export(res: dict[str, Any]) -> None:
    name = {"onnx": "ONNX", "torchscript": "TorchScript", "openvino": "OpenVINO"}.get(res["format"], res["format"])
    meta = res["metadata"]
    shape = "dynamic shapes" if meta["dynamic"] else f"static {meta['batch']}x3x{meta['imgsz'][0]}x{meta['imgsz'][1]}"
    print(f"{name}: export success {res['seconds']:.1f}s, saved as {res['file']} ({res['size_mb']:.1f} MB, {shape}, "
          f"stride {meta['stride']}, {len(meta['names'])} class names embedded)")
    c = res.get("check")
    if c:
        runtime = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}.get(res["format"], "reloaded TorchScript")
        verdict = "match" if c["ok"] else "MISMATCH"
        runtime += f" ({c['precision']})" if c.get("precision") else ""
        print(f"{name}: {runtime} vs PyTorch on one input: max abs diff {c['max_abs']:.2e} "
              f"(boxes {c['max_abs_boxes']:.2e} px, scores {c['max_abs_scores']:.2e}) -> {verdict}")


def _int8(fp32: Path, imgsz: tuple[int, int], opt: ExportOptions, device: torch.device) -> dict[str, Any]:
    """Quantize ``fp32`` and, with ``opt.int8_report``, report mAP and latency of both models side by side."""
    from engine.export.int8 import calibration_images, quantize_onnx_int8

    images = calibration_images(opt.data, opt.int8_images)
    int8 = fp32.with_name(f"{fp32.stem}_int8.onnx")
    res = quantize_onnx_int8(fp32, int8, images, imgsz, method=opt.int8_method)
    print(f"ONNX INT8: quantized {res['quantized_convs']} Conv layers (Detect outputs kept in float) in "
          f"{res['seconds']:.1f}s, {opt.int8_method} calibration on {res['images']} images of {opt.data}; saved as {int8} "
          f"({res['size_mb']:.1f} MB)")
    out: dict[str, Any] = {"export": res}
    if opt.int8_report:
        out["report"] = _map_and_latency([fp32, int8], opt, device, imgsz)
        print(f"\n{'model':<28}{'mAP50':>8}{'mAP50-95':>10}{'latency ms (b1)':>17}{'p10-p90':>15}")
        for r in out["report"]:
            lat = r["latency"]
            print(f"{Path(r['file']).name:<28}{r['mAP50']:>8.3f}{r['mAP50_95']:>10.3f}{lat['median_ms']:>17.1f}"
                  f"{lat['p10_ms']:>8.1f}-{lat['p90_ms']:.1f}")
    return out


def _map_and_latency(files: list[Path], opt: ExportOptions, device: torch.device,
                     imgsz: tuple[int, int]) -> list[dict[str, Any]]:
    """Per file, val.py's mAP (rect batches when the file is dynamic, else letterboxing into its exported shape) and
    batch-1 latency, the files timed together (interleaved: the report compares them)."""
    data = load_dataset_config(opt.data)
    backends, rows = [load_backend(f, device) for f in files], []
    for file, backend in zip(files, backends):
        size = backend.input_size(max(imgsz))
        res = scorer(data, size, backend.stride, backend.names or data["names"], rect=backend.dynamic,
                     workers=opt.workers)(backend)
        rows.append({"file": str(file), "mAP50": res["mAP50"], "mAP50_95": res["mAP50_95"]})
    for row, latency in zip(rows, measure_latencies([(b, imgsz, 1) for b in backends], warmup=5, repeats=30)):
        row["latency"] = latency
    return rows
