"""What the sweep measures itself on each finished model: parameters, GFLOPs, size, CPU latency, |gamma| values.

Figures are cached in ``measurements.json`` keyed by stage and by the model file's size and modification time, so a
resumed sweep measures only what is new or changed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from engine.benchmark import measure_latencies
from utils.files import atomic_write_json, read_json
from models.checkpoint import load_model
from models.summary import model_facts
from pruning import build_groups, prunable_bn_positions
from utils.checkpoint import resolve_weights

__all__ = ["Measurements", "stage_facts", "interleaved_latency", "prunable_gammas"]

LOGGER = logging.getLogger(__name__)


def stage_facts(weights: str | Path, mode: str = "normal", gammas: bool = False) -> dict:
    """Parameters, GFLOPs at 640 (YOLOv5's convention) and the size in MB of the model as an fp16 checkpoint without
    training state (what prune.py writes), so that every row's size compares like with like whatever file it came
    from. With ``gammas``: the share of prunable |gamma| below 0.01 and their median."""
    model, _ = load_model(weights, device="cpu")
    out = model_facts(model, 640)
    if gammas:
        g = _prunable_gammas(model, mode)
        out.update(gamma_lt_0_01=float((g < 0.01).mean()) if g.size else None,
                   gamma_median=float(np.median(g)) if g.size else None)
    return out


def interleaved_latency(weights: list[str | Path], imgsz: int, warmup: int = 5, repeats: int = 30,
                        threads: int = 0, rounds: int = 5) -> list[dict]:
    """CPU latency of several models (fused, batch 1), all timed together in interleaved rounds
    (:func:`engine.benchmark.measure_latencies`): drift in the machine's load reaches every model alike.

    Args:
        weights: model files.
        warmup, repeats, rounds: as for :func:`engine.benchmark.time_interleaved` (untimed runs of each model first,
            timed runs per model in all, rounds they are spread over).
        threads: PyTorch CPU threads while timing (0: leave PyTorch's setting); restored afterwards.

    Returns:
        one dict per model: latency_ms (median of its runs), latency_iqr_ms (their interquartile range),
        latency_threads (PyTorch's threads while timing).
    """
    import torch

    models = [load_model(w, device="cpu", fuse=True)[0] for w in weights]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # on request only, and only for the timing
    try:
        rows = measure_latencies([(m, imgsz, 1) for m in models], warmup, repeats, rounds)
    finally:
        torch.set_num_threads(before)
    return [{"latency_ms": r["median_ms"], "latency_iqr_ms": r["iqr_ms"], "latency_threads": r["threads"]}
            for r in rows]


def _prunable_gammas(model, mode: str) -> np.ndarray:  # noqa: ANN001

    modules = dict(model.named_modules())
    parts = [modules[path].weight.detach().abs().float().cpu().numpy()[pos]
             for path, pos in prunable_bn_positions(build_groups(model), mode).items()]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def prunable_gammas(weights: str | Path, mode: str = "normal") -> np.ndarray:
    """|gamma| of the BatchNorm channels that sparsity training penalises and pruning ranks under ``mode``."""
    model, _ = load_model(weights, device="cpu")
    return _prunable_gammas(model, mode)


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class Measurements:
    """The cache of per-stage figures (``measurements.json`` in the sweep dir).

    Args:
        path: the cache file.
        imgsz: latency image size; latency measured at another size is measured again.
        warmup, repeats, threads: latency settings (see :func:`interleaved_latency`).
        mode: which BNs count as prunable for the |gamma| figures.
    """

    def __init__(self, path: str | Path, imgsz: int, warmup: int = 5, repeats: int = 30, threads: int = 0,
                 mode: str = "normal") -> None:
        self.path = Path(path)
        self.imgsz, self.warmup, self.repeats, self.threads, self.mode = imgsz, warmup, repeats, threads, mode
        self.data: dict[str, dict] = read_json(self.path)

    def _entry(self, name: str, weights: str | Path) -> tuple[dict, Path]:
        path = resolve_weights(weights)
        sig = _signature(path)
        entry = self.data.get(name, {})
        if entry.get("file") != str(path) or entry.get("signature") != sig:
            entry = {"file": str(path), "signature": sig}  # a new or rewritten model: measure it again
            self.data[name] = entry
        return entry, path

    def facts(self, name: str, weights: str | Path, gammas: bool = False) -> dict:
        """:func:`stage_facts` of stage ``name``'s model (cached)."""
        entry, path = self._entry(name, weights)
        if "params" not in entry or (gammas and "gamma_lt_0_01" not in entry):
            entry.update(stage_facts(path, self.mode, gammas))
            atomic_write_json(self.path, self.data)
        return entry

    def latency(self, models: dict[str, str | Path]) -> None:
        """:func:`interleaved_latency` of ``{stage name: model}``, all timed together in one session.

        Cached: nothing is timed again while the set of models, their files and the settings stay the same; when one
        of them changes, all are timed again, so every figure in a table comes from the same session.
        """
        entries = {name: self._entry(name, w)[0] for name, w in models.items()}
        key = {"imgsz": self.imgsz, "warmup": self.warmup, "repeats": self.repeats, "threads": self.threads,
               "models": sorted(models)}
        if all(e.get("latency_settings") == key for e in entries.values()):
            return
        names = list(models)
        print(f"sweep: timing {len(names)} models on the CPU ({self.repeats} runs each at {self.imgsz} px, batch 1, "
              "interleaved)", flush=True)
        for name, r in zip(names, interleaved_latency([entries[n]["file"] for n in names], self.imgsz, self.warmup,
                                                      self.repeats, self.threads)):
            entries[name].update(r, latency_settings=key)
        atomic_write_json(self.path, self.data)

    def get(self, name: str) -> dict:
        """Whatever is cached for stage ``name`` (possibly nothing)."""
        return self.data.get(name, {})
