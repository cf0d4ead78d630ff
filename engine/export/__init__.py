"""export.py: ``run.py`` (ExportOptions and the run: which formats, checks, the summary), one module per format
(``onnx_export``, ``torchscript_export``, ``openvino_export``), INT8 quantization (``int8``) and the pieces they share
(``common``: metadata, output comparison, the model prepared for export).

Nothing is imported here, so that importing one exporter does not load the others.
"""

__all__: list[str] = []
