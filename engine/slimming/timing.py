"""Latency of many models in PyTorch and ONNX Runtime, timed together: interleaved rounds in one process.

On a shared machine the load drifts over minutes, so timing model after model hands that drift to whichever model
ran at a busy moment. Here each round times every (model, runtime) pair for a few runs, and a pair's figures are the
median and 90th percentile over all its runs: drift reaches every model alike, and their ratios hold.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["Timed", "time_interleaved"]


@dataclass
class Timed:
    """One thing to time at ``imgsz``: a checkpoint file or an in-memory model (timed in PyTorch, and as a static
    ONNX export in ONNX Runtime), or an ``.onnx`` file (ONNX Runtime only)."""

    key: str
    file: str | nn.Module
    imgsz: int


def _session(file: Path, threads: int):  # noqa: ANN202 - an onnxruntime InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"])


def _runners(items: list[Timed], threads: int, tmp: Path, runtimes: tuple[str, ...]) -> dict[tuple[str, str], callable]:
    """``{(key, runtime): run-once function}`` for ``runtimes`` (of "torch", "ort"), with inputs made up front."""
    from engine.exporters.common import prepare_for_export
    from engine.exporters.onnx_export import export_onnx
    from utils.checkpoint import load_model

    out = {}
    for it in items:
        x = torch.rand(1, 3, it.imgsz, it.imgsz)
        onnx_file = Path(it.file) if not isinstance(it.file, nn.Module) else None
        if onnx_file is None or onnx_file.suffix != ".onnx":
            src = it.file if isinstance(it.file, nn.Module) else load_model(it.file, device="cpu")[0]
            model = prepare_for_export(src, "cpu")  # a fused eval copy in fp32; the input model is not changed

            def run_torch(m=model, x=x):  # noqa: ANN001, ANN202
                with torch.inference_mode():
                    m(x)

            if "torch" in runtimes:
                out[(it.key, "torch")] = run_torch
            if "ort" in runtimes:
                onnx_file = tmp / f"{len(out)}_{it.key}.onnx"
                export_onnx(model, onnx_file, it.imgsz, dynamic=False, device="cpu", check=False, prepared=True)
        if "ort" not in runtimes:
            continue
        sess = _session(onnx_file, threads)
        name = sess.get_inputs()[0].name
        feed = {name: x.numpy()}
        out[(it.key, "ort")] = lambda s=sess, f=feed: s.run(None, f)
    return out


def time_interleaved(items: list[Timed], threads: int = 1, repeats: int = 50, rounds: int = 10,
                     warmup: int = 5, runtimes: tuple[str, ...] = ("torch", "ort")) -> dict[str, dict]:
    """Batch-1 CPU latency of every item in PyTorch (checkpoints only) and ONNX Runtime, interleaved.

    Args:
        items: what to time.
        runtimes: which of "torch" and "ort" to time (the other's figures are None).
        threads: PyTorch and ONNX Runtime intra-op threads while timing (PyTorch's setting is restored after).
        repeats: timed runs per (item, runtime), spread over ``rounds`` rounds.
        warmup: untimed runs of each first.

    Returns:
        ``{key: {"torch_ms", "torch_p90_ms", "ort_ms", "ort_p90_ms", "threads", "repeats"}}`` in milliseconds
        (median and 90th percentile; the torch figures are None for ONNX files).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the benchmark's own process, for the timing only
    try:
        with tempfile.TemporaryDirectory() as tmp:
            runners = _runners(items, threads, Path(tmp), runtimes)
            for fn in runners.values():
                for _ in range(warmup):
                    fn()
            times: dict[tuple[str, str], list[float]] = {k: [] for k in runners}
            per_round = max(repeats // max(rounds, 1), 1)
            for _ in range(max(rounds, 1)):
                for k, fn in runners.items():
                    fn()  # one untimed run: the previous model evicted this one's weights from the caches
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        fn()
                        times[k].append((time.perf_counter() - t0) * 1e3)
            runners.clear()
    finally:
        torch.set_num_threads(before)
    out: dict[str, dict] = {}
    for it in items:
        row = {"threads": threads, "repeats": per_round * max(rounds, 1)}
        for rt in ("torch", "ort"):
            t = times.get((it.key, rt))
            row[f"{rt}_ms"] = float(np.median(t)) if t else None
            row[f"{rt}_p90_ms"] = float(np.percentile(t, 90)) if t else None
        out[it.key] = row
    return out
