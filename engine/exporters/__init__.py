"""Exporters: one module per format (ONNX, TorchScript, OpenVINO), INT8 quantization, and the pieces they share."""

from engine.exporters.common import build_metadata, compare_outputs, decode_metadata, prepare_for_export
from engine.exporters.onnx_export import DEFAULT_OPSET, export_onnx
from engine.exporters.openvino_export import export_openvino
from engine.exporters.torchscript_export import export_torchscript

__all__ = ["DEFAULT_OPSET", "build_metadata", "compare_outputs", "decode_metadata", "export_onnx", "export_openvino",
           "export_torchscript", "prepare_for_export"]
