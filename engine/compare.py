"""Side-by-side comparison of checkpoints: parameters, GFLOPs, file size, mAP and measured CPU latency."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from engine.benchmark import measure_latencies
from engine.val.validator import scorer
from models.checkpoint import load_model
from models.summary import model_facts
from utils.checkpoint import resolve_weights
from utils.cli import FlagError
from utils.data import load_dataset_config
from utils.options import at_least, check_options, imgsz_opt, opt
from utils.paths import short_names

__all__ = ["CompareOptions", "compare_models", "format_table"]

LOGGER = logging.getLogger(__name__)


@dataclass
class CompareOptions:
    """benchmarks/compare.py's options (what to compare and how): each field declares its flags, help text and range
    check once."""

    weights: list[str] = opt([], "--weights", nargs="+", type=str, required=True,
                             help="checkpoints to compare (the first is the baseline)")
    labels: list[str] = opt([], "--labels", nargs="+", type=str,
                            help="row names (default: the shortest distinct end of each path)")
    data: str = opt("data/coco128.yaml", "--data", help="dataset.yaml")
    imgsz: int = imgsz_opt(320, "validation and latency image size")
    batch_size: int = opt(16, "--batch-size", help="validation batch size", check=at_least(1))
    workers: int = opt(8, "--workers", help="max dataloader workers", check=at_least(0))
    repeats: int = opt(20, "--repeats", help="timed forward passes per model", check=at_least(1))
    json: str = opt("", "--json", help="also write the rows to this JSON file")

    def validate(self, given: Collection[str] = ()) -> None:
        """One label per checkpoint, when labels are given.

        Raises:
            FlagError: naming both flags.
        """
        if self.labels and len(self.labels) != len(self.weights):
            raise FlagError(f"--labels: {len(self.labels)} labels for {len(self.weights)} --weights")


def compare_models(opt: CompareOptions) -> list[dict]:
    """Validate each checkpoint on the same data and image size, then time them all together on this machine (batch 1,
    interleaved: :func:`engine.benchmark.measure_latencies`); one dict per checkpoint."""
    check_options(opt)  # the flags' own checks, for options built in Python rather than parsed
    data = load_dataset_config(opt.data)
    rows, fused_models, score = [], [], None
    labels = opt.labels or short_names(opt.weights)  # runs/a/weights/best.pt, runs/b/...: two rows, two names
    for label, w in zip(labels, opt.weights):
        path = resolve_weights(w)
        model, ckpt = load_model(path)
        facts = model_facts(model, 640, path)
        if score is None:
            score = scorer(data, opt.imgsz, int(model.stride.max()), model.names, batch_size=opt.batch_size,
                           workers=opt.workers)
        fused = copy.deepcopy(model).fuse()
        res = score(fused)
        fused_models.append(fused)
        rows.append({"model": label, "weights": str(path), **facts, "mAP50": res["mAP50"], "mAP50_95": res["mAP50_95"],
                     "imgsz": opt.imgsz, "pruned": bool(ckpt["arch"].get("channels"))})
    timed = measure_latencies([(m, opt.imgsz, 1) for m in fused_models], warmup=3, repeats=opt.repeats)
    for row, lat in zip(rows, timed):
        row.update(latency_ms=lat["median_ms"], latency_iqr_ms=lat["iqr_ms"])
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
