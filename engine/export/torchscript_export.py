"""TorchScript export: a traced module with our metadata as the ``config.txt`` extra file (as YOLOv5 stores it)."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.export.common import build_metadata, compare_outputs, detect_head, example_input, start_export

__all__ = ["export_torchscript", "TORCHSCRIPT_META_FILE"]

LOGGER = logging.getLogger(__name__)
TORCHSCRIPT_META_FILE = "config.txt"


def _second_shape(h: int, w: int, stride: int) -> tuple[int, int]:
    """Another valid input shape (both sides changed by one stride) to see whether the trace kept shapes symbolic."""
    return (h - stride if h > 2 * stride else h + stride), (w + stride)


def export_torchscript(model: nn.Module, file: str | Path, imgsz: int | tuple[int, int] | list[int] = 640,
                       batch_size: int = 1, half: bool = False, device: torch.device | str = "cpu",
                       inplace: bool = False, check: bool = True, metadata: dict[str, Any] | None = None,
                       prepared: bool = False) -> dict[str, Any]:
    """Trace an in-memory detection model to a ``.torchscript`` file.

    The trace is checked at the export shape and at a second shape (other batch, height and width). When the second
    run matches too, the file is marked ``dynamic`` (any stride-multiple size and batch, so val.py can use rectangular
    batches); otherwise it is marked static with a warning.

    Args:
        model: a ``models.yolo.Model``; copied, never changed.
        file: the ``.torchscript`` file to write.
        imgsz: input size, an int or (height, width).
        batch_size: batch of the example input.
        half: trace in float16 (CUDA only).
        device: device to trace on.
        inplace: Detect's ``inplace`` flag.
        check: compare the saved and reloaded module with PyTorch (always done for the dynamic-shape probe).
        metadata: extra or replacement metadata entries.
        prepared: ``model`` is already a :func:`prepare_for_export` copy.

    Returns:
        dict: file, seconds, size_mb, metadata, and with ``check`` the :func:`compare_outputs` dict.
    """
    m, im, file, device, (h, w) = start_export(model, file, imgsz, batch_size, device, half, inplace, prepared)
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # torch.jit is deprecated in favour of torch.export, but it still traces these models and loads anywhere
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        traced = torch.jit.trace(m, im, strict=False, check_trace=False)  # checked below, against PyTorch
        y_ref = m(im)
        stride = int(max(detect_head(m).stride.tolist()))
        h2, w2 = _second_shape(h, w, stride)
        im2 = example_input(batch_size + 1, h2, w2, device, half)
        probe = compare_outputs(traced(im2), m(im2))
    if not probe["ok"]:
        LOGGER.warning("%s: the TorchScript trace is only valid at %dx%d batch %d (other shapes differ by %.3g); "
                       "marked static", file, h, w, batch_size, probe["max_abs"])
    meta = build_metadata(m, (h, w), batch_size, dynamic=probe["ok"], half=half,
                          source=Path(getattr(model, "ckpt_path", "")).name)
    meta.update(metadata or {})
    traced.save(str(file), _extra_files={TORCHSCRIPT_META_FILE: json.dumps(meta)})
    out: dict[str, Any] = {"format": "torchscript", "file": str(file), "seconds": time.perf_counter() - t0,
                           "size_mb": file.stat().st_size / 2**20, "metadata": meta, "notes": []}
    if check:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)  # torch.jit.load is deprecated
            warnings.simplefilter("ignore", category=FutureWarning)
            loaded = torch.jit.load(str(file), map_location=device)
            out["check"] = compare_outputs(loaded(im), y_ref)
        if not out["check"]["ok"]:
            LOGGER.warning("%s: reloaded TorchScript output differs from PyTorch: %s", file, out["check"])
    return out
