"""OpenVINO IR export: the model goes to ONNX (float32), OpenVINO converts that, and YOLOv5's folder layout holds it.

``yolov5n.pt`` becomes ``yolov5n_openvino_model/`` with ``yolov5n.xml`` (graph), ``yolov5n.bin`` (weights) and
``yolov5n.yaml`` (our metadata: stride, names, input shape; YOLOv5 reads stride and names from the same file).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from engine.export.common import build_metadata, compare_outputs, start_export
from engine.export.onnx_export import DEFAULT_OPSET, export_onnx

__all__ = ["export_openvino", "openvino_xml", "compile_openvino", "inference_precision", "FP16_ATOL", "FP16_RTOL",
           "BF16_ATOL", "BF16_RTOL"]

LOGGER = logging.getLogger(__name__)
# FP16 weight compression rounds every weight to 11 significant bits: yolov5n at 160 px then moves scores by ~2e-3
# and boxes by a few tenths of a pixel against float32 PyTorch, far beyond the float32 bounds of compare_outputs.
FP16_ATOL, FP16_RTOL = 1e-2, 1e-2
# bfloat16 keeps 8 bits of mantissa against float16's 11: errors 8x as large. An FP16-compressed IR runs in bf16 on
# CPUs with bf16 units (AMD EPYC with AVX512_BF16, Intel Xeons with AMX), in f16 or f32 elsewhere.
BF16_ATOL, BF16_RTOL = 8 * FP16_ATOL, 8 * FP16_RTOL
CHECK_TOLERANCE = {"f16": {"atol": FP16_ATOL, "rtol": FP16_RTOL}, "bf16": {"atol": BF16_ATOL, "rtol": BF16_RTOL}}


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO model given as the file or as its folder (which must hold exactly one).

    Raises:
        FileNotFoundError: no such file or folder, or a folder without an ``.xml``.
        ValueError: a folder with several ``.xml`` files (name the one to use).
    """
    p = Path(path)
    if p.is_dir():
        xmls = sorted(p.glob("*.xml"))
        if not xmls:
            raise FileNotFoundError(f"{p}: no OpenVINO model (.xml) in this folder")
        if len(xmls) > 1:
            raise ValueError(f"{p} holds {len(xmls)} OpenVINO models ({', '.join(x.name for x in xmls)}); "
                             "pass the .xml file to use")
        return xmls[0]
    if not p.is_file():
        raise FileNotFoundError(f"OpenVINO model '{path}' not found ({p.resolve()}); pass an existing .xml file or "
                                "<name>_openvino_model folder")
    return p


def compile_openvino(xml: str | Path, half: bool = False, threads: int | None = None) -> Any:
    """Read an OpenVINO IR and compile it for the CPU.

    Args:
        xml: the ``.xml`` file (its ``.bin`` beside it).
        half: the IR holds FP16-compressed weights: let OpenVINO pick its fastest precision (bf16 or fp16 where the
            CPU has it). Otherwise inference is pinned to float32, which a CPU with bf16 units would not default to,
            so that an FP32 export gives FP32 results on every machine.
        threads: CPU inference threads (default: OpenVINO's own choice).

    Returns:
        the ``openvino.CompiledModel``.
    """
    import openvino as ov

    config: dict[str, Any] = {} if half else {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = ov.Core()
    return core.compile_model(core.read_model(str(xml)), "CPU", config)


def inference_precision(compiled: Any) -> str:
    """The precision an ``openvino.CompiledModel`` actually runs in: 'f32', 'bf16' or 'f16'."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def export_openvino(model: nn.Module, file: str | Path, imgsz: int | tuple[int, int] | list[int] = 640,
                    batch_size: int = 1, dynamic: bool = False, half: bool = False, opset: int = DEFAULT_OPSET,
                    device: torch.device | str = "cpu", inplace: bool = False, check: bool = True,
                    metadata: dict[str, Any] | None = None, prepared: bool = False) -> dict[str, Any]:
    """Export an in-memory detection model to an OpenVINO IR folder.

    Args:
        model: a ``models.yolo.Model`` (pruned or not), float32; copied, never changed.
        file: the ``<name>_openvino_model`` folder to write; ``<name>`` also names the files inside.
        imgsz: input size, an int or (height, width).
        batch_size: the input batch (fixed unless ``dynamic``).
        dynamic: batch, height and width as dynamic dimensions.
        half: store the weights in float16 (half the size; OpenVINO decompresses them), on any device.
        opset: ONNX opset of the intermediate model.
        device: device to trace on (the IR itself runs on OpenVINO's CPU plugin).
        inplace: Detect's ``inplace`` flag.
        check: compile the IR and compare OpenVINO with PyTorch on one random input (looser bounds with ``half``).
        metadata: extra or replacement metadata entries (stride and names are filled in from the model).
        prepared: ``model`` is already a float32 :func:`prepare_for_export` copy.

    Returns:
        dict: file (the folder), xml, seconds, size_mb, metadata, notes, and with ``check`` the
        :func:`compare_outputs` dict.
    """
    import openvino as ov

    folder = Path(file)
    stem = folder.name.removesuffix("_openvino_model") or "model"
    m, im, folder, device, (h, w) = start_export(model, folder, imgsz, batch_size, device, False, inplace, prepared)
    with torch.no_grad():
        y_ref = m(im)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / f"{stem}.onnx"
        export_onnx(m, onnx_file, (h, w), batch_size, dynamic=dynamic, opset=opset, device=device, check=False,
                    prepared=True)
        ov_model = ov.convert_model(str(onnx_file))
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / f"{stem}.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=half)
    meta = build_metadata(m, (h, w), batch_size, dynamic, half=half, source=Path(getattr(model, "ckpt_path", "")).name)
    meta.update(metadata or {})
    xml.with_suffix(".yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    out: dict[str, Any] = {"format": "openvino", "file": str(folder), "xml": str(xml),
                           "seconds": time.perf_counter() - t0,
                           "size_mb": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 2**20,
                           "metadata": meta, "notes": [f"OpenVINO {ov.get_version()}"
                                                       + (", FP16-compressed weights" if half else "")]}
    if check:
        compiled = compile_openvino(xml, half=half)
        y = compiled(im.float().cpu().numpy())[0]
        precision = inference_precision(compiled)
        out["check"] = compare_outputs(np.asarray(y), y_ref, **CHECK_TOLERANCE.get(precision, {}))
        out["check"]["precision"] = precision
        if not out["check"]["ok"]:
            LOGGER.warning("%s: OpenVINO output differs from PyTorch beyond tolerance: %s", folder, out["check"])
    return out
