"""Measured inference latency: one model or backend (``measure_latency``), a model in PyTorch against ONNX Runtime
(``compare_runtimes``), speed-ups between two models (``speedup``), and ``benchmarks/latency.py`` (``run``).

Latency here is the forward pass alone (no pre-processing, no NMS) on a fixed random batch, after warm-up runs,
timed run by run with CUDA synchronised; medians and percentiles are reported because single runs on a shared
machine are noisy.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import torch
from torch import nn

from engine.backends import Backend
from engine.exporters.common import example_input, normalize_imgsz
from utils.cli import FlagError
from utils.options import at_least, check_options, opt

__all__ = ["measure_latency", "compare_runtimes", "speedup", "format_latency_table", "LatencyOptions", "run"]

LOGGER = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runtime_name(model: nn.Module | Backend) -> str:
    if isinstance(model, Backend):
        name = {"pytorch": "pytorch", "torchscript": "torchscript", "onnx": "onnxruntime",
                "openvino": "openvino"}[model.format]
        return name + ("-int8" if model.metadata.get("int8") else "") + ("-fp16" if model.fp16 else "")
    return "pytorch"


def measure_latency(model: nn.Module | Backend, imgsz: int | Sequence[int] = 640, batch_size: int = 1,
                    warmup: int = 10, repeats: int = 50, half: bool = False) -> dict[str, Any]:
    """Time the forward pass of ``model`` (an nn.Module in eval mode, or a :class:`~engine.backends.Backend`).

    Args:
        model: what to time; an nn.Module runs in eval mode (restored afterwards) on the device of its parameters.
        imgsz: input size, an int or (height, width).
        batch_size: images per forward pass.
        warmup: untimed runs first (allocations, kernel selection, lazy initialisation).
        repeats: timed runs.
        half: float16 input on CUDA (an nn.Module must already be ``.half()``; backends cast to their own dtype).

    Returns:
        dict: runtime, device, imgsz, batch_size, warmup, repeats, threads (PyTorch's, or the ONNX session's with 0
        for ONNX Runtime's default), and in milliseconds median_ms,
        mean_ms, std_ms, min_ms, max_ms, p10_ms, p90_ms, iqr_ms and per_image_ms (median / batch_size).

    Raises:
        ValueError: a static-shape backend asked for another input shape, or fewer than one repeat.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    h, w = normalize_imgsz(imgsz if isinstance(imgsz, int) else list(imgsz))
    if isinstance(model, Backend):
        device = model.device
        if not model.dynamic and model.imgsz is not None and (h, w) != tuple(model.imgsz):
            raise ValueError(f"{model.file} takes only {model.imgsz[0]}x{model.imgsz[1]} inputs (static export); "
                             f"cannot time it at {h}x{w}")
    else:
        device = next(model.parameters()).device
    was_training = getattr(model, "training", False)
    model.eval()
    half = half and device.type == "cuda"
    x = example_input(batch_size, h, w, device, half)
    times = []
    with torch.inference_mode():
        for _ in range(max(warmup, 0)):
            model(x)
        _sync(device)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
    if was_training:
        model.train()
    t = np.asarray(times)
    p10, p25, p50, p75, p90 = np.percentile(t, [10, 25, 50, 75, 90])
    return {"runtime": _runtime_name(model), "device": str(device), "imgsz": [h, w], "batch_size": batch_size,
            "warmup": warmup, "repeats": repeats, "threads": getattr(model, "threads", torch.get_num_threads()), "median_ms": float(p50),
            "mean_ms": float(t.mean()), "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()),
            "p10_ms": float(p10), "p90_ms": float(p90), "iqr_ms": float(p75 - p25),
            "per_image_ms": float(p50) / batch_size}


def compare_runtimes(model: nn.Module, imgsz: int | Sequence[int] = 640, batch_sizes: Sequence[int] = (1, 8),
                     warmup: int = 10, repeats: int = 50, runtimes: Sequence[str] = ("pytorch", "onnxruntime"),
                     device: torch.device | str = "cpu", threads: int | None = None) -> list[dict[str, Any]]:
    """Latency of an in-memory model (e.g. a pruned one) in PyTorch and in ONNX Runtime, per batch size.

    PyTorch runs a fused eval copy (what val.py and detect.py run); ONNX Runtime runs a temporary dynamic-shape
    export of the same copy. The model itself is not changed. ``threads`` sets ONNX Runtime's intra-op threads
    (PyTorch uses ``torch.get_num_threads()``); give the same figure to both on a busy machine.

    Returns:
        one :func:`measure_latency` dict per (runtime, batch size).
    """
    from engine.backends import ONNXBackend
    from engine.exporters.common import prepare_for_export
    from engine.exporters.onnx_export import export_onnx

    unknown = set(runtimes) - {"pytorch", "onnxruntime"}
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; choose from pytorch, onnxruntime")
    device = torch.device(device)
    prepared = prepare_for_export(model, device)
    rows = []
    if "pytorch" in runtimes:
        rows += [measure_latency(prepared, imgsz, b, warmup, repeats) for b in batch_sizes]
    if "onnxruntime" in runtimes:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "model.onnx"
            export_onnx(prepared, file, imgsz, dynamic=True, device=device, check=False, prepared=True)
            backend = ONNXBackend(file, device, threads=threads)
            rows += [measure_latency(backend, imgsz, b, warmup, repeats) for b in batch_sizes]
            del backend  # release the session before the file goes
    return rows


def speedup(base: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median speed-up of ``new`` over ``base`` for each (runtime, imgsz, batch size) both measured."""
    key = lambda r: (r["runtime"], tuple(r["imgsz"]), r["batch_size"])  # noqa: E731
    ref = {key(r): r for r in base}
    return [{"runtime": r["runtime"], "imgsz": r["imgsz"], "batch_size": r["batch_size"],
             "base_ms": ref[key(r)]["median_ms"], "new_ms": r["median_ms"],
             "speedup": ref[key(r)]["median_ms"] / r["median_ms"]} for r in new if key(r) in ref]


def format_latency_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table: model, runtime, size, batch, median, p10-p90, IQR and per-image milliseconds."""
    head = f"{'model':<24}{'runtime':<20}{'imgsz':>9}{'batch':>7}{'median ms':>11}{'p10-p90 ms':>17}{'IQR ms':>9}" \
           f"{'ms/img':>9}"
    lines = [head]
    for r in rows:
        size = "x".join(map(str, r["imgsz"])) if r["imgsz"][0] != r["imgsz"][1] else str(r["imgsz"][0])
        if "error" in r:
            lines.append(f"{r.get('model', ''):<24}{r['runtime']:<20}{size:>9}{r['batch_size']:>7}  {r['error']}")
            continue
        spread = f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f}"
        lines.append(f"{r.get('model', ''):<24}{r['runtime']:<20}{size:>9}{r['batch_size']:>7}{r['median_ms']:>11.1f}"
                     f"{spread:>17}{r['iqr_ms']:>9.1f}{r['per_image_ms']:>9.1f}")
    return "\n".join(lines)


@dataclass
class LatencyOptions:
    """benchmarks/latency.py's options: each field declares its flags, help text and range check once."""

    weights: list[str] = opt(["yolov5n.pt"], "--weights", nargs="+", type=str,
                             help="models to time (.pt, .torchscript, .onnx, .xml / _openvino_model)")
    imgsz: list[int] = opt([320, 640], "--imgsz", "--img", "--img-size", nargs="+", type=int, help="square sizes",
                           check=at_least(1))
    batch_size: list[int] = opt([1, 8], "--batch-size", nargs="+", type=int, help="batch sizes", check=at_least(1))
    warmup: int = opt(10, "--warmup", help="untimed runs before timing", check=at_least(0))
    repeats: int = opt(50, "--repeats", help="timed runs per row", check=at_least(1))
    device: str = opt("cpu", "--device", help="cuda device, i.e. 0, or cpu")
    onnx: bool = opt(False, "--onnx", help="also time a dynamic ONNX export of each .pt in ONNX Runtime")
    int8: bool = opt(False, "--int8", help="also time its INT8 quantization (needs --onnx)")
    openvino: bool = opt(False, "--openvino", help="also time a dynamic OpenVINO export of each .pt")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml for INT8 calibration images")
    threads: int = opt(0, "--threads", check=at_least(0),
                       help="CPU threads for PyTorch, ONNX Runtime and OpenVINO (0: each runtime's default)")
    json: str = opt("", "--json", help="write the rows to this JSON file")

    def validate(self, given: Collection[str] = ()) -> None:
        """``--int8`` needs ``--onnx``.

        Raises:
            FlagError: naming both flags.
        """
        if self.int8 and not self.onnx:
            raise FlagError("--int8 quantizes the ONNX export: add --onnx")


def run(opt: LatencyOptions) -> list[dict[str, Any]]:
    """benchmarks/latency.py: time each weights file (and, with ``onnx``/``int8``/``openvino``, its exports) per
    size and batch; print a table and return the rows (also written to ``opt.json`` when given)."""
    from engine.backends import load_backend

    check_options(opt)  # the flags' own checks, for options built in Python rather than parsed
    if opt.threads:
        torch.set_num_threads(opt.threads)  # on request only: the benchmark's own process, never at import
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        backends = []
        for w in opt.weights:
            b = load_backend(w, opt.device, threads=opt.threads or None)
            backends.append((Path(w).name, b))
            if b.format == "pytorch" and (opt.onnx or opt.openvino):
                backends += _exports_of(b, Path(tmp), opt)
        for name, b in backends:
            for size in opt.imgsz:
                for bs in opt.batch_size:
                    try:
                        r = measure_latency(b, size, bs, opt.warmup, opt.repeats)
                    except ValueError as e:  # a static export at another size: say so in the table
                        r = {"runtime": _runtime_name(b), "imgsz": [size, size], "batch_size": bs, "error": str(e)}
                    r["model"] = name
                    rows.append(r)
                    LOGGER.debug("%s", r)
        backends.clear()
    print(format_latency_table(rows))
    # Other processes on the machine inflate and spread the figures (OpenMP threads spin-wait for busy cores):
    # say how busy it was, so that a reader can judge them.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads: {opt.threads or 'runtime default'} (torch {torch.get_num_threads()}), {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the end")
    if opt.json:
        Path(opt.json).write_text(json.dumps({"options": asdict(opt), "rows": rows}, indent=1))
        print(f"Results saved to {opt.json}")
    return rows


def _exports_of(backend: Backend, tmp: Path, opt: LatencyOptions) -> list[tuple[str, Backend]]:
    """Dynamic exports of a PyTorch backend's model, opened: ONNX (and its INT8 version with ``opt.int8``) with
    ``opt.onnx``, OpenVINO IR with ``opt.openvino``."""
    from engine.backends import ONNXBackend, OpenVINOBackend

    stem, threads = backend.file.stem, opt.threads or None
    out: list[tuple[str, Backend]] = []
    if opt.onnx:
        from engine.exporters.onnx_export import export_onnx

        fp32 = tmp / f"{stem}.onnx"
        export_onnx(backend.model, fp32, max(opt.imgsz), dynamic=True, device=backend.device, check=False)
        out.append((fp32.name, ONNXBackend(fp32, backend.device, threads=threads)))
    if opt.onnx and opt.int8:
        from engine.exporters.int8 import calibration_images, quantize_onnx_int8

        int8 = tmp / f"{stem}_int8.onnx"
        # MinMax calibration: the method only changes the scales, not the graph, so latency is the same as with the
        # slower percentile calibration that export.py uses by default.
        quantize_onnx_int8(fp32, int8, calibration_images(opt.data), (max(opt.imgsz),) * 2, method="minmax")
        out.append((int8.name, ONNXBackend(int8, backend.device, threads=threads)))
    if opt.openvino:
        from engine.exporters.openvino_export import export_openvino

        folder = tmp / f"{stem}_openvino_model"
        export_openvino(backend.model, folder, max(opt.imgsz), dynamic=True, device=backend.device, check=False)
        out.append((folder.name, OpenVINOBackend(folder, backend.device, threads=threads)))
    return out
