"""Side-by-side comparison of checkpoints: parameters, GFLOPs, file size, mAP and measured CPU latency."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CompareOptions", "compare_models", "format_table"]

LOGGER = logging.getLogger(__name__)


@dataclass
class CompareOptions:
    """What to compare and how: checkpoints, dataset, image size, latency repeats."""

    weights: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    data: str = "data/coco128.yaml"
    imgsz: int = 320
    batch_size: int = 16
    workers: int = 8
    repeats: int = 20
    json: str = ""


def compare_models(opt: CompareOptions) -> list[dict]:
    """Validate and time each checkpoint on the same data, image size and machine; one dict per checkpoint."""
    from engine.benchmark import measure_latency
    from engine.validator import evaluate, val_loader
    from models.summary import count_flops
    from utils.checkpoint import load_model, resolve_weights
    from utils.data import load_dataset_config

    data = load_dataset_config(opt.data)
    rows, loader = [], None
    labels = opt.labels or [Path(w).stem for w in opt.weights]
    if len(labels) != len(opt.weights):
        raise ValueError(f"{len(labels)} labels for {len(opt.weights)} weights")
    for label, w in zip(labels, opt.weights):
        path = resolve_weights(w)
        model, ckpt = load_model(path)
        params = sum(p.numel() for p in model.parameters())
        gflops = count_flops(model, 640)
        if loader is None:
            loader = val_loader(data["val"], opt.imgsz, opt.batch_size, int(model.stride.max()), nc=data["nc"],
                                workers=opt.workers)
        fused = copy.deepcopy(model).fuse()
        res = evaluate(fused, loader, model.names)
        lat = measure_latency(fused, imgsz=opt.imgsz, batch_size=1, warmup=3, repeats=opt.repeats)
        rows.append({"model": label, "weights": str(path), "params": params, "gflops": gflops,
                     "size_mb": path.stat().st_size / 1e6, "mAP50": res["mAP50"], "mAP50_95": res["mAP50_95"],
                     "latency_ms": lat["median_ms"], "latency_iqr_ms": lat.get("iqr_ms"), "imgsz": opt.imgsz,
                     "pruned": bool(ckpt["arch"].get("channels"))})
    if opt.json:
        Path(opt.json).write_text(json.dumps(rows, indent=1))
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table, with ratios to the first row."""
    base = rows[0]
    head = "| model | params | GFLOPs (640) | file (MB) | mAP50 | mAP50-95 | CPU latency bs1 (ms) |"
    lines = [head, "|" + " --- |" * 7]
    for r in rows:
        ratio = "" if r is base else f" ({r['params'] / base['params']:.0%})"
        speed = "" if r is base else f" ({base['latency_ms'] / r['latency_ms']:.2f}x)"
        lines.append(f"| {r['model']} | {r['params']:,}{ratio} | {r['gflops']:.2f} | {r['size_mb']:.2f} | "
                     f"{r['mAP50']:.3f} | {r['mAP50_95']:.3f} | {r['latency_ms']:.1f}{speed} |")
    return "\n".join(lines)
