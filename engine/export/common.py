"""What every export format shares: preparing a model copy, the metadata we embed, and comparing outputs."""

from __future__ import annotations

import ast
import copy
import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.detect import Detect

__all__ = ["META_FORMAT", "start_export", "prepare_for_export", "build_metadata", "encode_metadata", "decode_metadata",
           "normalize_metadata", "compare_outputs", "normalize_imgsz", "example_input", "detect_head"]

META_FORMAT = "yolo-slim"  # the same tag as our checkpoints, so a file says which code base wrote it
# Element-wise closeness like numpy.allclose: |a - b| <= ATOL + RTOL * |b|. Box columns are pixels: at 640 px,
# float32 PyTorch itself moves them by ~2e-3 (fused vs unfused Conv+BN, or fp32 vs fp64), so a pure absolute
# 1e-3 bound would flag rounding noise; the relative term covers large coordinates, ATOL covers the scores.
ATOL, RTOL = 1e-3, 1e-4


def normalize_imgsz(imgsz: int | tuple[int, ...] | list[int]) -> tuple[int, int]:
    """``640`` or ``[640]`` -> (640, 640); ``[480, 640]`` -> (480, 640) as (height, width)."""
    if isinstance(imgsz, int):
        return imgsz, imgsz
    sizes = [int(s) for s in imgsz]
    if len(sizes) == 1:
        return sizes[0], sizes[0]
    if len(sizes) != 2:
        raise ValueError(f"--imgsz takes one size or two (height width), got {list(imgsz)}")
    return sizes[0], sizes[1]


def imgsz_text(imgsz: int | tuple[int, ...] | list[int]) -> str:
    """``320`` for a square size, ``320x256`` (height x width) for a rectangle: how tables and names spell it."""
    h, w = normalize_imgsz(imgsz)
    return str(h) if h == w else f"{h}x{w}"


def detect_head(model: nn.Module) -> Detect:
    """The model's Detect head (``model.detect``, else its last Detect module); ValueError when it has none."""
    head = getattr(model, "detect", None)
    if not isinstance(head, Detect):
        heads = [m for m in model.modules() if isinstance(m, Detect)]
        if not heads:
            raise ValueError(f"{type(model).__name__} has no Detect head: only detection models can be exported")
        head = heads[-1]
    return head


def prepare_for_export(model: nn.Module, device: torch.device | str = "cpu", half: bool = False,
                       inplace: bool = False, fuse: bool = True) -> nn.Module:
    """A copy of ``model`` ready to trace: eval mode, Conv+BN fused, no gradients, Detect returning one tensor.

    The caller's model is never changed (pruning reports export models they keep using).

    Args:
        model: a ``models.yolo.Model`` (or any module ending in a Detect head).
        device: where to trace.
        half: cast to float16 (CUDA only: many CPU kernels have no fp16 version).
        inplace: the Detect ``inplace`` flag of YOLOv5's export (our decode never writes in place, so it only
            travels with the model).
        fuse: fold BatchNorm into the preceding convolutions when the model supports it.
    """
    m = copy.deepcopy(model).to(device).float().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    if fuse and hasattr(m, "fuse"):
        m.fuse()
    head = detect_head(m)
    head.export = True
    head.inplace = inplace
    return m.half() if half else m


def example_input(batch_size: int, h: int, w: int, device: torch.device | str = "cpu",
                  half: bool = False) -> torch.Tensor:
    """A fixed random image batch in [0, 1) (seeded locally: the global RNG is left alone)."""
    im = torch.rand(batch_size, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    return im.half() if half else im


def start_export(model: nn.Module, file: str | Path, imgsz: int | tuple[int, ...] | list[int], batch_size: int,
                 device: torch.device | str, half: bool, inplace: bool,
                 prepared: bool) -> tuple[nn.Module, torch.Tensor, Path, torch.device, tuple[int, int]]:
    """Steps every exporter shares: check ``half``, make the output folder, prepare the model and an example input.

    Returns (prepared model, example input, file, device, (h, w)).
    """
    device = torch.device(device)
    if half and device.type != "cuda":
        raise ValueError("--half export needs a CUDA device (--device 0): CPU kernels have no float16 version")
    h, w = normalize_imgsz(imgsz)
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    m = model if prepared else prepare_for_export(model, device, half=half, inplace=inplace)
    return m, example_input(batch_size, h, w, device, half), file, device, (h, w)


def build_metadata(model: nn.Module, imgsz: tuple[int, int], batch_size: int, dynamic: bool, half: bool = False,
                   int8: bool = False, source: str = "") -> dict[str, Any]:
    """Plain values that describe an exported file: stride, names and the input it expects."""
    head = detect_head(model)
    names = list(getattr(model, "names", [])) or [f"class{i}" for i in range(head.nc)]
    strides = [int(s) for s in head.stride.tolist()]
    return {"format": META_FORMAT, "version": 1, "task": "detect", "stride": max(strides), "strides": strides,
            "nc": int(head.nc), "names": names, "imgsz": list(imgsz), "batch": int(batch_size),
            "dynamic": bool(dynamic), "half": bool(half), "int8": bool(int8), "source": str(source),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """String values for ONNX ``metadata_props``: lists and dicts as JSON, scalars as JSON literals."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; also reads YOLOv5's own exports, whose ``names`` is a Python dict repr.

    Values are parsed as JSON, then as Python literals (``ast.literal_eval`` evaluates no code), else kept as text.
    """
    out: dict[str, Any] = {}
    for k, v in props.items():
        try:
            out[k] = json.loads(v)
        except (ValueError, TypeError):
            try:
                out[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                out[k] = v
    return normalize_metadata(out)


def normalize_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with YOLOv5's names dict (``{0: 'person', ...}``) turned into our list of names."""
    names = meta.get("names")
    if isinstance(names, dict):
        return {**meta, "names": [str(names[k]) for k in sorted(names, key=int)]}
    return meta


def compare_outputs(y: np.ndarray | torch.Tensor, y_ref: np.ndarray | torch.Tensor, atol: float = ATOL,
                    rtol: float = RTOL) -> dict[str, Any]:
    """Compare an exported model's decoded output with PyTorch's (both (bs, N, 5 + nc)).

    Returns max_abs (all columns), max_abs_boxes (xywh, pixels), max_abs_scores (objectness and classes),
    max_rel_boxes, and ``ok``: every element within ``atol + rtol * |ref|`` (defaults: see the note at ``ATOL``;
    files with float16 weights need looser bounds).
    """
    a = y.detach().float().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float32)
    b = y_ref.detach().float().cpu().numpy() if isinstance(y_ref, torch.Tensor) else np.asarray(y_ref, np.float32)
    if a.shape != b.shape:
        return {"ok": False, "error": f"output shape {a.shape} != PyTorch {b.shape}", "max_abs": float("inf")}
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    ref = np.abs(b.astype(np.float64))
    return {"ok": bool(np.all(d <= atol + rtol * ref)), "max_abs": float(d.max(initial=0.0)),
            "max_abs_boxes": float(d[..., :4].max(initial=0.0)), "max_abs_scores": float(d[..., 4:].max(initial=0.0)),
            "max_rel_boxes": float((d[..., :4] / np.maximum(ref[..., :4], 1.0)).max(initial=0.0))}
