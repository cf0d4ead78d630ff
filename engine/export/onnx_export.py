"""ONNX export: trace, check with the ONNX checker, embed metadata, optionally simplify, verify in ONNX Runtime."""

from __future__ import annotations

import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.export.common import build_metadata, compare_outputs, encode_metadata, start_export

__all__ = ["DEFAULT_OPSET", "export_onnx", "set_onnx_metadata", "ort_providers", "ort_session", "run_onnx",
           "simplify_onnx"]

LOGGER = logging.getLogger(__name__)
DEFAULT_OPSET = 17  # supported by every onnxruntime >= 1.14; Hardswish/HardSigmoid of the light backbones need 14


def ort_providers(device: torch.device | str = "cpu") -> list[str]:
    """ONNX Runtime providers for ``device``: CUDA first where the installed onnxruntime has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if torch.device(device).type == "cuda":
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        LOGGER.warning("CUDA requested but this onnxruntime has no CUDAExecutionProvider (providers: %s); "
                       "running ONNX models on the CPU (install onnxruntime-gpu for CUDA)", ", ".join(available))
    return ["CPUExecutionProvider"]


def ort_session(model: str | Path | bytes, device: torch.device | str = "cpu",
                threads: int | None = None):  # noqa: ANN201 - an onnxruntime InferenceSession
    """The one way an ONNX Runtime ``InferenceSession`` is made here (export checks, val/detect, every timing).

    Args:
        model: an ``.onnx`` file or its bytes.
        device: CUDA first for a CUDA device (see :func:`ort_providers`), else the CPU.
        threads: intra-op threads (None or 0: ONNX Runtime's default, one per physical core); one inter-op thread,
            as our graphs run sequentially.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=ort_providers(device))


def run_onnx(model: str | Path | bytes, im: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Run an ONNX model (a file or its bytes) once on ``im`` and return the first output."""
    session = ort_session(model, device)
    inp = session.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    return session.run(None, {inp.name: im.astype(dtype)})[0]


def set_onnx_metadata(proto: Any, meta: dict[str, Any]) -> None:
    """Write ``meta`` into ``proto.metadata_props`` (replacing keys that are already there)."""
    strings = encode_metadata(meta)
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in strings]
    del proto.metadata_props[:]
    for k, v in [*keep, *strings.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def simplify_onnx(proto: Any) -> tuple[Any, str]:
    """Simplify with onnxslim (constant folding, shape inference, fused and dead nodes); returns (proto, note).

    A model onnxslim cannot handle is kept as it is, with a note: it is valid, only larger.

    Raises:
        ModuleNotFoundError: onnxslim is not installed (it is in requirements.txt).
    """
    try:
        import onnxslim
    except ImportError:
        raise ModuleNotFoundError("--simplify needs onnxslim, which is not installed: pip install -r requirements.txt "
                                  "(or pip install onnxslim)", name="onnxslim") from None
    version = getattr(onnxslim, "__version__", "")
    n = len(proto.graph.node)
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:  # noqa: BLE001 - onnxslim raises whatever its passes raise; the export must not fail
        return proto, f"--simplify skipped: onnxslim {version} failed ({type(e).__name__}: {e}); kept the original"
    return slim, f"simplified with onnxslim {version}: {n} -> {len(slim.graph.node)} nodes"


def export_onnx(model: nn.Module, file: str | Path, imgsz: int | tuple[int, int] | list[int] = 640,
                batch_size: int = 1, dynamic: bool = False, opset: int = DEFAULT_OPSET, half: bool = False,
                simplify: bool = False, device: torch.device | str = "cpu", inplace: bool = False,
                check: bool = True, metadata: dict[str, Any] | None = None, prepared: bool = False) -> dict[str, Any]:
    """Export an in-memory detection model to ONNX.

    Args:
        model: a ``models.yolo.Model`` (pruned or not); it is copied, never changed.
        file: the ``.onnx`` file to write.
        imgsz: input size, an int or (height, width); also the size of the check run.
        batch_size: the input batch (fixed unless ``dynamic``).
        dynamic: batch, height and width as dynamic axes.
        opset: ONNX opset.
        half: export in float16 (CUDA device only).
        simplify: simplify with onnxslim (:func:`simplify_onnx`).
        device: device to trace on.
        inplace: Detect's ``inplace`` flag.
        check: run the ONNX checker and compare ONNX Runtime with PyTorch on one random input.
        metadata: extra or replacement metadata entries (stride and names are filled in from the model).
        prepared: ``model`` is already a :func:`prepare_for_export` copy (skips another copy and fuse).

    Returns:
        dict: file, seconds, size_mb, metadata, notes, and with ``check`` the :func:`compare_outputs` dict.

    Raises:
        ValueError: half precision without CUDA, or half together with dynamic axes.
        ModuleNotFoundError: ``simplify`` without onnxslim installed.
    """
    import onnx

    if half and dynamic:
        raise ValueError("--half and --dynamic together are not supported; choose one")
    m, im, file, device, (h, w) = start_export(model, file, imgsz, batch_size, device, half, inplace, prepared)
    with torch.no_grad():
        y_ref = m(im)
    t0 = time.perf_counter()
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}} if dynamic else None
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of torch.export; it still handles every model
        # here and needs no onnxscript, which is not installed.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # Into memory first: the file is then written once, with metadata (models here are far below protobuf's 2 GB)
        buffer = io.BytesIO()
        torch.onnx.export(m, im, buffer, opset_version=opset, input_names=["images"], output_names=["output0"],
                          dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    del buffer
    onnx.checker.check_model(proto)
    notes = []
    if simplify:
        proto, note = simplify_onnx(proto)
        notes.append(note)
        (LOGGER.info if note.startswith("simplified") else LOGGER.warning)(note)
    meta = build_metadata(m, (h, w), batch_size, dynamic, half=half,
                          source=Path(getattr(model, "ckpt_path", "")).name)
    meta.update(metadata or {})
    set_onnx_metadata(proto, meta)
    onnx.save(proto, str(file))
    out: dict[str, Any] = {"format": "onnx", "file": str(file), "seconds": time.perf_counter() - t0,
                           "size_mb": file.stat().st_size / 2**20, "metadata": meta, "notes": notes}
    if check:
        y = run_onnx(file, im.cpu().numpy(), device)
        out["check"] = compare_outputs(y, y_ref)
        if not out["check"]["ok"]:
            LOGGER.warning("%s: ONNX Runtime output differs from PyTorch beyond tolerance: %s", file, out["check"])
    return out
