"""Measured inference latency, all timed by one loop: :func:`time_interleaved`.

The guide's rule for comparisons: interleave the things you compare in one process, report medians and ratios. On
a shared machine the load drifts over minutes, so timing model after model hands that drift to whichever model ran at
a busy moment (a 25%-pruned yolov5n once came out 3.5x slower than its source). :func:`time_interleaved` times every
call in the same rounds, so drift reaches them all alike; one call alone is the same loop with one round.

Built on it: one model or backend (:func:`measure_latency`); several (model or backend, size, batch) cases at once
(:func:`measure_latencies`: benchmarks/latency.py, compare.py, export.py's INT8 report, :func:`compare_runtimes`);
checkpoints or in-memory models in PyTorch and ONNX Runtime at batch 1 (:func:`time_models`: prune.py's latency,
budget search and ``--round auto``, the slimming study, benchmarks/prune_budgets.py); the speed-ups between two sets
of rows (:func:`speedup`), and ``benchmarks/latency.py`` itself (:func:`run`).

Latency here is the forward pass alone (no pre-processing, no NMS) on a fixed random batch, after warm-up runs,
timed run by run with CUDA synchronised; medians and percentiles are reported because single runs are noisy.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Hashable, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from engine.backends import Backend, ONNXBackend, OpenVINOBackend, load_backend
from engine.export.common import example_input, imgsz_text, normalize_imgsz, prepare_for_export
from engine.export.onnx_export import export_onnx, ort_session
from engine.export.openvino_export import compile_openvino, export_openvino
from models.checkpoint import load_model
from utils.cli import FlagError
from utils.options import at_least, check_options, imgsz_opt, opt
from utils.paths import short_names

__all__ = ["time_interleaved", "measure_latency", "measure_latencies", "Timed", "time_models", "compare_runtimes",
           "speedup", "format_latency_table", "LatencyOptions", "run", "LATENCY_BACKENDS"]

LOGGER = logging.getLogger(__name__)
# The runtimes a latency budget can be measured in (prune.py and slim.py --latency-backend) -> time_models' key
LATENCY_BACKENDS = {"onnxruntime": "ort", "openvino": "ov", "torch": "torch"}
K = TypeVar("K", bound=Hashable)


def time_interleaved(calls: Mapping[K, Callable[[], object]], repeats: int = 50, rounds: int = 10,
                     warmup: int = 5) -> dict[K, dict[str, float]]:
    """Time every call in the same rounds: each round runs each call in turn, a share of ``repeats`` times.

    Args:
        calls: ``{key: run once}``; each call must finish its work before it returns (synchronise CUDA in it).
        repeats: timed runs of each call, spread as evenly as they go over the rounds.
        rounds: rounds (at most ``repeats``); 1 times the calls one after another.
        warmup: untimed runs of each call first (allocations, kernel selection, lazy initialisation). With several
            calls each round also starts a call with one untimed run: the call before it evicted its weights from
            the caches.

    Returns:
        ``{key: stats}`` in milliseconds over all of the key's runs: median_ms, mean_ms, std_ms, min_ms, max_ms,
        p10_ms, p90_ms, iqr_ms, and repeats and rounds.

    Raises:
        ValueError: fewer than one repeat.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rounds = max(min(rounds, repeats), 1)
    for fn in calls.values():
        for _ in range(max(warmup, 0)):
            fn()
    times: dict[K, list[float]] = {k: [] for k in calls}
    for r in range(rounds):
        n = repeats // rounds + (r < repeats % rounds)
        for k, fn in calls.items():
            if len(calls) > 1:
                fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: _stats(t, rounds) for k, t in times.items()}


def _stats(times: list[float], rounds: int) -> dict[str, float]:
    t = np.asarray(times)
    p10, p25, p50, p75, p90 = np.percentile(t, [10, 25, 50, 75, 90])
    return {"repeats": len(t), "rounds": rounds, "median_ms": float(p50), "mean_ms": float(t.mean()),
            "std_ms": float(t.std()), "min_ms": float(t.min()), "max_ms": float(t.max()), "p10_ms": float(p10),
            "p90_ms": float(p90), "iqr_ms": float(p75 - p25)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _runtime_name(model: nn.Module | Backend) -> str:
    if isinstance(model, Backend):
        name = {"pytorch": "pytorch", "torchscript": "torchscript", "onnx": "onnxruntime",
                "openvino": "openvino"}[model.format]
        if model.format == "openvino":  # the precision OpenVINO actually runs in (bf16 for an FP16 IR on bf16 CPUs)
            return name + ("-int8" if model.metadata.get("int8") else "") + f" ({model.precision})"
        return name + ("-int8" if model.metadata.get("int8") else "") + ("-fp16" if model.fp16 else "")
    return "pytorch"


def _forward(model: nn.Module | Backend, h: int, w: int, batch_size: int, half: bool,
             inputs: dict[tuple, torch.Tensor]) -> tuple[Callable[[], None], dict[str, Any]]:
    """A run-once function for ``model`` on a fixed batch (shared through ``inputs`` by cases of the same shape), and
    what the row says about it.

    Raises:
        ValueError: a static-shape backend asked for another input shape.
    """
    if isinstance(model, Backend):
        device = model.device
        if not model.dynamic and model.imgsz is not None and (h, w) != tuple(model.imgsz):
            raise ValueError(f"{model.file} takes only {model.imgsz[0]}x{model.imgsz[1]} inputs (static export); "
                             f"cannot time it at {h}x{w}")
    else:
        device = next(model.parameters()).device
    half = half and device.type == "cuda"
    key = (batch_size, h, w, str(device), half)
    x = inputs.get(key)
    if x is None:
        x = inputs[key] = example_input(batch_size, h, w, device, half)

    def run_once() -> None:
        with torch.inference_mode():
            model(x)
        _sync(device)

    return run_once, {"runtime": _runtime_name(model), "device": str(device), "imgsz": [h, w],
                      "batch_size": batch_size, "threads": getattr(model, "threads", torch.get_num_threads())}


def measure_latencies(cases: Sequence[tuple[nn.Module | Backend, int | Sequence[int], int]], warmup: int = 10,
                      repeats: int = 50, rounds: int = 10, half: bool = False) -> list[dict[str, Any]]:
    """Time the forward pass of several (model, imgsz, batch size) cases together (:func:`time_interleaved`).

    Args:
        cases: what to time: an nn.Module (run in eval mode, restored afterwards, on the device of its parameters) or
            a :class:`~engine.backends.Backend`, an input size (an int or (height, width)) and a batch size.
        warmup, repeats, rounds: as for :func:`time_interleaved` (rounds 1: one case after another).
        half: float16 input on CUDA (an nn.Module must already be ``.half()``; backends cast to their own dtype).

    Returns:
        one dict per case, in order: runtime, device, imgsz, batch_size, threads (PyTorch's, or the backend's with 0
        for its runtime's default), warmup, :func:`time_interleaved`'s stats and per_image_ms (median /
        batch_size). A case that cannot run (a static export at another size) has ``error`` instead of figures.
    """
    modules = {id(m): m for m, _, _ in cases if isinstance(m, nn.Module)}
    training = {k: m.training for k, m in modules.items()}
    rows: list[dict[str, Any]] = []
    calls: dict[int, Callable[[], None]] = {}
    inputs: dict[tuple, torch.Tensor] = {}
    try:
        for m in modules.values():
            m.eval()
        for i, (model, imgsz, batch_size) in enumerate(cases):
            h, w = normalize_imgsz(imgsz if isinstance(imgsz, int) else list(imgsz))
            try:
                calls[i], row = _forward(model, h, w, batch_size, half, inputs)
            except ValueError as e:
                row = {"runtime": _runtime_name(model), "imgsz": [h, w], "batch_size": batch_size, "error": str(e)}
            rows.append(row)
        timed = time_interleaved(calls, repeats, rounds, warmup)
    finally:
        for k, m in modules.items():
            m.train(training[k])
    for i, row in enumerate(rows):
        if i in timed:
            row.update(warmup=warmup, **timed[i], per_image_ms=timed[i]["median_ms"] / row["batch_size"])
    return rows


def measure_latency(model: nn.Module | Backend, imgsz: int | Sequence[int] = 640, batch_size: int = 1,
                    warmup: int = 10, repeats: int = 50, half: bool = False) -> dict[str, Any]:
    """Time the forward pass of one model or backend alone (:func:`measure_latencies` with one case, one round).

    Returns:
        :func:`measure_latencies`' dict.

    Raises:
        ValueError: a static-shape backend asked for another input shape, or fewer than one repeat.
    """
    row = measure_latencies([(model, imgsz, batch_size)], warmup, repeats, rounds=1, half=half)[0]
    if "error" in row:
        raise ValueError(row["error"])
    return row


@dataclass
class Timed:
    """One thing :func:`time_models` times at ``imgsz`` (a square size or a (height, width)), batch 1, on the CPU: a
    checkpoint file or an in-memory model (timed in PyTorch, and as a static ONNX export in ONNX Runtime), or an
    ``.onnx`` file (ONNX Runtime only)."""

    key: str
    file: str | nn.Module
    imgsz: int | Sequence[int]


def _model_calls(items: list[Timed], threads: int, tmp: Path,
                 runtimes: tuple[str, ...]) -> dict[tuple[str, str], Callable[[], object]]:
    """``{(key, runtime): run once}`` for ``runtimes`` (of "torch", "ort"), with inputs made up front. ONNX Runtime
    runs the bare session on a numpy input: no conversions in the timed call."""
    out: dict[tuple[str, str], Callable[[], object]] = {}
    inputs: dict[tuple, torch.Tensor] = {}
    for it in items:
        h, w = normalize_imgsz(it.imgsz)
        onnx_file = Path(it.file) if not isinstance(it.file, nn.Module) else None
        if onnx_file is None or onnx_file.suffix != ".onnx":
            src = it.file if isinstance(it.file, nn.Module) else load_model(it.file, device="cpu")[0]
            model = prepare_for_export(src, "cpu")  # a fused eval copy in fp32; the input model is not changed
            if "torch" in runtimes:
                out[(it.key, "torch")] = _forward(model, h, w, 1, False, inputs)[0]
            if "ort" in runtimes or "ov" in runtimes:
                onnx_file = tmp / f"{len(out)}_{it.key}.onnx"
                export_onnx(model, onnx_file, (h, w), dynamic=False, device="cpu", check=False, prepared=True)
        x = example_input(1, h, w).numpy()
        if "ort" in runtimes:
            sess = ort_session(onnx_file, "cpu", threads)
            feed = {sess.get_inputs()[0].name: x}
            out[(it.key, "ort")] = lambda s=sess, f=feed: s.run(None, f)
        if "ov" in runtimes:  # OpenVINO reads the ONNX file itself, pinned to float32 like an FP32 export
            request = compile_openvino(onnx_file, threads=threads or None).create_infer_request()
            out[(it.key, "ov")] = lambda r=request, f=x: r.infer({0: f})
    return out


def time_models(items: list[Timed], threads: int = 1, repeats: int = 50, rounds: int = 10, warmup: int = 5,
                runtimes: tuple[str, ...] = ("torch", "ort")) -> dict[str, dict]:
    """Batch-1 CPU latency of every item in PyTorch (models and checkpoints) and ONNX Runtime, all interleaved
    (:func:`time_interleaved`).

    Args:
        items: what to time (distinct keys).
        threads: PyTorch and ONNX Runtime intra-op threads while timing (PyTorch's setting is restored after; 0 leaves
            PyTorch's setting and gives ONNX Runtime its default).
        repeats, rounds, warmup: as for :func:`time_interleaved`.
        runtimes: which of "torch", "ort" (ONNX Runtime) and "ov" (OpenVINO, float32) to time (the others' figures
            are None).

    Returns:
        ``{key: {"torch_ms", "torch_p90_ms", "torch_iqr_ms", "ort_ms", "ort_p90_ms", "ort_iqr_ms", "ov_ms", ...,
        "threads", "repeats"}}`` in milliseconds (median, 90th percentile and interquartile range; the torch figures
        are None for ONNX files).
    """
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # the benchmark's own process, for the timing only
    try:
        with tempfile.TemporaryDirectory() as tmp:
            calls = _model_calls(items, threads, Path(tmp), runtimes)
            timed = time_interleaved(calls, repeats, rounds, warmup)
            calls.clear()  # release the sessions before their files go
    finally:
        torch.set_num_threads(before)
    out: dict[str, dict] = {}
    for it in items:
        row: dict[str, Any] = {"threads": threads, "repeats": repeats}
        for rt in ("torch", "ort", "ov"):
            t = timed.get((it.key, rt), {})
            row.update({f"{rt}_ms": t.get("median_ms"), f"{rt}_p90_ms": t.get("p90_ms"),
                        f"{rt}_iqr_ms": t.get("iqr_ms")})
        out[it.key] = row
    return out


def compare_runtimes(model: nn.Module, imgsz: int | Sequence[int] = 640, batch_sizes: Sequence[int] = (1, 8),
                     warmup: int = 10, repeats: int = 50, runtimes: Sequence[str] = ("pytorch", "onnxruntime"),
                     device: torch.device | str = "cpu", threads: int | None = None) -> list[dict[str, Any]]:
    """Latency of an in-memory model (e.g. a pruned one) in PyTorch and in ONNX Runtime, per batch size, all cases
    timed together (:func:`measure_latencies`).

    PyTorch runs a fused eval copy (what val.py and detect.py run); ONNX Runtime runs a temporary dynamic-shape
    export of the same copy. The model itself is not changed. ``threads`` sets ONNX Runtime's intra-op threads
    (PyTorch uses ``torch.get_num_threads()``); give the same figure to both on a busy machine.

    Returns:
        one :func:`measure_latency` dict per (runtime, batch size), PyTorch's first.
    """
    unknown = set(runtimes) - {"pytorch", "onnxruntime"}
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; choose from pytorch, onnxruntime")
    device = torch.device(device)
    prepared = prepare_for_export(model, device)
    with tempfile.TemporaryDirectory() as tmp:
        models: list[nn.Module | Backend] = [prepared] if "pytorch" in runtimes else []
        if "onnxruntime" in runtimes:
            file = Path(tmp) / "model.onnx"
            export_onnx(prepared, file, imgsz, dynamic=True, device=device, check=False, prepared=True)
            models.append(ONNXBackend(file, device, threads=threads))
        rows = measure_latencies([(m, imgsz, b) for m in models for b in batch_sizes], warmup, repeats,
                                 rounds=min(10, repeats))
        models.clear()  # release the session before the file goes
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
    w = max([24, *(len(str(r.get("model", ""))) + 2 for r in rows)])  # the model column fits the longest name
    head = f"{'model':<{w}}{'runtime':<20}{'imgsz':>9}{'batch':>7}{'median ms':>11}{'p10-p90 ms':>17}{'IQR ms':>9}" \
           f"{'ms/img':>9}"
    lines = [head]
    for r in rows:
        size = imgsz_text(r["imgsz"])
        if "error" in r:
            lines.append(f"{r.get('model', ''):<{w}}{r['runtime']:<20}{size:>9}{r['batch_size']:>7}  {r['error']}")
            continue
        spread = f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f}"
        lines.append(f"{r.get('model', ''):<{w}}{r['runtime']:<20}{size:>9}{r['batch_size']:>7}"
                     f"{r['median_ms']:>11.1f}{spread:>17}{r['iqr_ms']:>9.1f}{r['per_image_ms']:>9.1f}")
    return "\n".join(lines)


@dataclass
class LatencyOptions:
    """benchmarks/latency.py's options: each field declares its flags, help text and range check once."""

    weights: list[str] = opt(["yolov5n.pt"], "--weights", nargs="+", type=str,
                             help="models to time (.pt, .torchscript, .onnx, .xml / _openvino_model)")
    imgsz: list[int] = imgsz_opt([320, 640], "square sizes", nargs="+")
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
    check_options(opt)  # the flags' own checks, for options built in Python rather than parsed
    if opt.threads:
        torch.set_num_threads(opt.threads)  # on request only: the benchmark's own process, never at import
    with tempfile.TemporaryDirectory() as tmp:
        backends = []
        for name, w in zip(short_names(opt.weights), opt.weights):  # three runs' best.pt stay three rows
            b = load_backend(w, opt.device, threads=opt.threads or None)
            backends.append((name, b))
            if b.format == "pytorch" and (opt.onnx or opt.openvino):
                backends += _exports_of(b, name, Path(tmp) / str(len(backends)), opt)
        cases = [(name, b, size, bs) for name, b in backends for size in opt.imgsz for bs in opt.batch_size]
        # every row timed together: the table compares them (a static export at another size gets an error row)
        rows = measure_latencies([c[1:] for c in cases], opt.warmup, opt.repeats)
        for (name, *_), r in zip(cases, rows):
            r["model"] = name
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


def _exports_of(backend: Backend, name: str, tmp: Path, opt: LatencyOptions) -> list[tuple[str, Backend]]:
    """Dynamic exports of a PyTorch backend's model into the new folder ``tmp``, opened and named after the row
    ``name`` of their source: ONNX (and its INT8 version with ``opt.int8``) with ``opt.onnx``, OpenVINO IR with
    ``opt.openvino``."""
    tmp.mkdir()
    stem, threads = backend.file.stem, opt.threads or None
    base = name[:-len(backend.file.suffix)] if name.endswith(backend.file.suffix) else name
    out: list[tuple[str, Backend]] = []
    if opt.onnx:
        fp32 = tmp / f"{stem}.onnx"
        export_onnx(backend.model, fp32, max(opt.imgsz), dynamic=True, device=backend.device, check=False)
        out.append((f"{base}.onnx", ONNXBackend(fp32, backend.device, threads=threads)))
    if opt.onnx and opt.int8:
        from engine.export.int8 import calibration_images, quantize_onnx_int8

        int8 = tmp / f"{stem}_int8.onnx"
        # MinMax calibration: the method only changes the scales, not the graph, so latency is the same as with the
        # slower percentile calibration that export.py uses by default.
        quantize_onnx_int8(fp32, int8, calibration_images(opt.data), (max(opt.imgsz),) * 2, method="minmax")
        out.append((f"{base}_int8.onnx", ONNXBackend(int8, backend.device, threads=threads)))
    if opt.openvino:
        folder = tmp / f"{stem}_openvino_model"
        export_openvino(backend.model, folder, max(opt.imgsz), dynamic=True, device=backend.device, check=False)
        out.append((f"{base}_openvino_model", OpenVINOBackend(folder, backend.device, threads=threads)))
    return out
