"""One inference interface over PyTorch checkpoints, TorchScript files, ONNX models and OpenVINO IR.

``load_backend(weights, device)`` picks the runtime from the file suffix (or YOLOv5's ``_openvino_model`` folder)
and returns a :class:`Backend` that ``engine.val.validator.evaluate`` and the predictor use in place of a model:
``backend(im)`` returns
``(decoded (bs, N, 5 + nc) float32, raw maps or None)``, and ``stride``, ``names``, ``device``, ``dynamic`` and
the fixed input shape of static exports are attributes read from the file's metadata.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.export.common import META_FORMAT, decode_metadata, normalize_metadata
from engine.export.onnx_export import ort_session
from engine.export.openvino_export import compile_openvino, inference_precision, openvino_xml
from models.checkpoint import load_model
from utils.checkpoint import resolve_weights
from utils.paths import weights_dir
from utils.torch_utils import select_device
from utils.yaml_io import read_yaml

__all__ = ["Backend", "PyTorchBackend", "TorchScriptBackend", "ONNXBackend", "OpenVINOBackend", "load_backend",
           "BACKEND_SUFFIXES"]

LOGGER = logging.getLogger(__name__)
DEFAULT_IMGSZ = 640  # val.py's and detect.py's size for a model that does not carry one (checkpoints), as YOLOv5
BACKEND_SUFFIXES = {".pt": "pytorch", ".torchscript": "torchscript", ".onnx": "onnx", ".xml": "openvino",
                    "_openvino_model": "openvino"}  # the last: YOLOv5's OpenVINO folder
DEFAULT_STRIDE = 32  # the largest stride of every YOLOv5 P5 model, used when a file does not say


class Backend:
    """Common attributes and behaviour; subclasses implement ``forward``.

    Attributes:
        format: 'pytorch', 'torchscript', 'onnx' or 'openvino'.
        file: the weights file.
        device: where inputs and outputs live.
        stride: the largest model stride (input sizes must be multiples of it).
        names: class names.
        dynamic: any batch and any stride-multiple input size is accepted.
        imgsz: (height, width) the file was exported at (the only accepted size when not ``dynamic``).
        batch: the fixed batch of a static export (inputs are padded or split to fit), else None.
        fp16: the model computes in float16.
        metadata: what the file says about itself ({} when it carries no metadata of ours).
    """

    format = "base"

    def __init__(self, file: Path, device: torch.device) -> None:
        self.file, self.device = Path(file), device
        self.stride, self.names = DEFAULT_STRIDE, []
        self.dynamic, self.imgsz, self.batch = True, None, None
        self.fp16 = False
        self.metadata: dict[str, Any] = {}

    # evaluate() treats its model like an nn.Module: these keep that working.
    def eval(self) -> Backend:
        """No-op (inference only); returns self."""
        return self

    def half(self) -> Backend:
        """Compute in float16 where the runtime can switch (PyTorch on CUDA); exported files keep their precision."""
        return self

    def float(self) -> Backend:
        """Undo :meth:`half`."""
        return self

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        raise NotImplementedError

    def __call__(self, im: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Run on a (bs, 3, h, w) float batch in [0, 1]; returns (decoded float32 on ``im``'s device, raw or None)."""
        return self.forward(im)

    def input_size(self, imgsz: int) -> int | tuple[int, int]:
        """The network input size to letterbox to: ``imgsz`` for dynamic models, else the exported (h, w).

        ``imgsz`` 0 (val.py's and detect.py's default) is the model's own: the size an export was made at (its
        metadata, static or dynamic), else 640. A static model given another ``--imgsz`` logs a warning and uses its
        own size (it accepts no other).
        """
        if not imgsz:
            if self.imgsz is None:
                return DEFAULT_IMGSZ
            h, w = self.imgsz
            return h if h == w else (h, w)
        if self.dynamic or self.imgsz is None:
            return imgsz
        h, w = self.imgsz
        if (h, w) != (imgsz, imgsz):
            LOGGER.warning("%s has a fixed input of %dx%d; using that instead of --imgsz %d (export with --dynamic "
                           "for other sizes and rectangular batches)", self.file, h, w, imgsz)
        return h if h == w else (h, w)

    def warmup(self, imgsz: tuple[int, int, int, int] = (1, 3, 640, 640)) -> None:
        """One run on zeros so the first timed call does not pay for initialisation."""
        if not self.dynamic and self.imgsz is not None:
            imgsz = (imgsz[0], 3, *self.imgsz)
        with torch.inference_mode():
            self(torch.zeros(imgsz, device=self.device))

    def _apply_metadata(self, meta: dict[str, Any], nc: int | None) -> None:
        """Take stride, names and input shape from ``meta``; warn and fall back to defaults when missing."""
        self.metadata = meta
        if meta.get("format") != META_FORMAT and "stride" not in meta:
            LOGGER.warning("%s carries no metadata of ours (stride, class names): assuming stride %d and %s; "
                           "re-export it with export.py to embed them", self.file, DEFAULT_STRIDE,
                           f"{nc} generic class names" if nc else "generic class names")
        try:
            self.stride = int(meta.get("stride", DEFAULT_STRIDE))
        except (TypeError, ValueError):
            LOGGER.warning("%s: metadata stride %r is not a number; using %d", self.file, meta.get("stride"),
                           DEFAULT_STRIDE)
            self.stride = DEFAULT_STRIDE
        names = meta.get("names")
        if isinstance(names, (list, tuple)) and names:
            self.names = [str(n) for n in names]
        elif nc:
            self.names = [f"class{i}" for i in range(nc)]
        self.fp16 = bool(meta.get("half", self.fp16))

    @property
    def has_names(self) -> bool:
        """True when class names came from the file rather than defaults."""
        return isinstance(self.metadata.get("names"), list) and bool(self.metadata.get("names"))

    def __repr__(self) -> str:
        shape = "dynamic" if self.dynamic else f"static {self.batch}x3x{self.imgsz[0]}x{self.imgsz[1]}"
        return f"{type(self).__name__}({self.file.name}, {self.device}, stride={self.stride}, {shape})"


class PyTorchBackend(Backend):
    """A checkpoint (``.pt``: ours, pruned or official) loaded through ``models.checkpoint.load_model``, fused."""

    format = "pytorch"

    def __init__(self, file: Path, device: torch.device, fuse: bool = True) -> None:
        super().__init__(file, device)
        self.model, self.ckpt = load_model(file, device=device, fuse=fuse)
        self.stride = int(self.model.stride.max())
        self.names = list(self.model.names)
        self.metadata = {"stride": self.stride, "names": self.names}

    def half(self) -> Backend:
        if self.device.type == "cuda":  # fp16 convolutions are CUDA-only in practice
            self.model.half()
            self.fp16 = True
        return self

    def float(self) -> Backend:
        self.model.float()
        self.fp16 = False
        return self

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        pred, raw = self.model(im.half() if self.fp16 else im.float())
        return pred.float(), raw


class TorchScriptBackend(Backend):
    """A ``.torchscript`` file written by export.py (metadata in its ``config.txt`` extra file)."""

    format = "torchscript"

    def __init__(self, file: Path, device: torch.device) -> None:
        super().__init__(file, device)
        extra = {"config.txt": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=DeprecationWarning)  # torch.jit.load is deprecated
                warnings.simplefilter("ignore", category=FutureWarning)
                self.model = torch.jit.load(str(file), _extra_files=extra, map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{file}: not a TorchScript model ({str(e).splitlines()[0]})") from None
        try:
            meta = json.loads(extra["config.txt"]) if extra["config.txt"] else {}
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        self._apply_metadata(meta, meta.get("nc"))
        self.dynamic = bool(self.metadata.get("dynamic", True))
        if "imgsz" in self.metadata:
            self.imgsz = tuple(int(s) for s in self.metadata["imgsz"])

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        y = self.model(im.half() if self.fp16 else im.float())
        if isinstance(y, (list, tuple)):  # YOLOv5's own TorchScript files return (pred,) or (pred, raw)
            y = y[0]
        return y.float(), None


class ArrayBackend(Backend):
    """A runtime fed through host memory (numpy): simple and device-independent; the copy is small next to the model.

    Subclasses set ``input_dtype``, ``batch`` (a static batch, or None) and implement ``_run``. A static batch is
    met by padding short batches and splitting long ones.
    """

    input_dtype: type = np.float32

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, im: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if not self.dynamic and tuple(im.shape[2:]) != tuple(self.imgsz):
            raise ValueError(f"{self.file} takes {self.imgsz[0]}x{self.imgsz[1]} inputs (a static export), "
                             f"got {im.shape[2]}x{im.shape[3]}")
        x = im.detach().cpu().numpy().astype(self.input_dtype, copy=False)
        n = x.shape[0]
        if self.batch is None or n == self.batch:
            y = self._run(x)
        else:
            chunks = []
            for i in range(0, n, self.batch):
                part = x[i:i + self.batch]
                k = part.shape[0]
                if k < self.batch:
                    part = np.concatenate([part, np.zeros((self.batch - k, *part.shape[1:]), part.dtype)])
                chunks.append(self._run(part)[:k])
            y = np.concatenate(chunks)
        return torch.from_numpy(y.astype(np.float32, copy=False)).to(im.device), None


class ONNXBackend(ArrayBackend):
    """An ``.onnx`` model run in ONNX Runtime, with the CUDA provider where the installed onnxruntime has it."""

    format = "onnx"

    def __init__(self, file: Path, device: torch.device, threads: int | None = None) -> None:
        super().__init__(file, device)
        self.threads = int(threads or 0)  # 0: ONNX Runtime's default (one thread per physical core)
        try:
            self.session = ort_session(file, device, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types for invalid files
            raise ValueError(f"{file}: not a usable ONNX model ({str(e).splitlines()[0]})") from None
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        if len(inp.shape) != 4:
            raise ValueError(f"{file}: expected one image input (batch, 3, height, width), got shape {inp.shape}")
        if len(out.shape) != 3 or (isinstance(out.shape[-1], int) and out.shape[-1] < 6):
            raise ValueError(f"{file}: not a detector export: its output has shape {out.shape}, expected (batch, "
                             "boxes, 5 + classes) as export.py writes")
        b, _, h, w = inp.shape
        nc = out.shape[-1] - 5 if isinstance(out.shape[-1], int) else None
        self._apply_metadata(decode_metadata(self.session.get_modelmeta().custom_metadata_map), nc)
        self.fp16 = self.input_dtype == np.float16
        self.dynamic = not (isinstance(h, int) and isinstance(w, int))
        self.batch = b if isinstance(b, int) else None
        if not self.dynamic:
            self.imgsz = (h, w)
        elif "imgsz" in self.metadata:
            self.imgsz = tuple(int(s) for s in self.metadata["imgsz"])

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class OpenVINOBackend(ArrayBackend):
    """An OpenVINO IR (``.xml`` + ``.bin``, or their ``_openvino_model`` folder) on OpenVINO's CPU plugin.

    Metadata comes from the ``.yaml`` beside the ``.xml`` (export.py's, or YOLOv5's stride and names). OpenVINO has
    no CUDA plugin: a CUDA ``device`` runs the model on the CPU (with a warning) and returns results on the device.
    """

    format = "openvino"

    def __init__(self, file: Path, device: torch.device, threads: int | None = None) -> None:
        if importlib.util.find_spec("openvino") is None:
            raise ValueError(f"{file}: OpenVINO models need the openvino package: pip install -r requirements.txt "
                             "(or pip install openvino)")
        xml = openvino_xml(file)
        super().__init__(xml, device)
        self.threads = int(threads or 0)  # 0: OpenVINO's default
        if device.type != "cpu":
            LOGGER.warning("OpenVINO runs on the CPU here (it has no %s plugin): %s", device.type, xml)
        meta_file = xml.with_suffix(".yaml")
        meta = read_yaml(meta_file, "OpenVINO metadata") if meta_file.is_file() else None
        meta = normalize_metadata(meta) if isinstance(meta, dict) else {}
        try:
            self.compiled = compile_openvino(xml, half=bool(meta.get("half")), threads=threads)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types for invalid files
            raise ValueError(f"{xml}: not a usable OpenVINO model ({str(e).splitlines()[0]})") from None
        self.precision = inference_precision(self.compiled)  # bf16 for an FP16 IR on CPUs with bf16 units
        inp, out = self.compiled.input(0), self.compiled.output(0)
        shape, out_shape = inp.get_partial_shape(), out.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise ValueError(f"{xml}: expected one image input (batch, 3, height, width), got shape {shape}")
        if out_shape.rank.is_dynamic or out_shape.rank.get_length() != 3 or (
                out_shape[2].is_static and out_shape[2].get_length() < 6):
            raise ValueError(f"{xml}: not a detector export: its output has shape {out_shape}, expected (batch, "
                             "boxes, 5 + classes) as export.py writes")
        nc = out_shape[2].get_length() - 5 if out_shape.rank.get_length() == 3 and out_shape[2].is_static else None
        self._apply_metadata(meta, nc)
        self.input_dtype = np.float16 if inp.get_element_type().get_type_name() == "f16" else np.float32
        self.dynamic = not (shape[2].is_static and shape[3].is_static)
        self.batch = shape[0].get_length() if shape[0].is_static else None
        if not self.dynamic:
            self.imgsz = (shape[2].get_length(), shape[3].get_length())
        elif "imgsz" in self.metadata:
            self.imgsz = tuple(int(s) for s in self.metadata["imgsz"])

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.compiled(x)[0]

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, {self.precision})"


def _format_of(weights: str | Path) -> str:
    """The runtime for ``weights``: by suffix, or 'openvino' for YOLOv5's ``<name>_openvino_model`` folder."""
    path = Path(str(weights))
    if path.name.endswith("_openvino_model"):
        return "openvino"
    suffix = path.suffix.lower()
    if suffix not in BACKEND_SUFFIXES:
        raise ValueError(f"--weights {weights}: unsupported model format '{suffix or '(no suffix)'}'; supported: "
                         + ", ".join(f"{s} ({f})" for s, f in BACKEND_SUFFIXES.items()))
    return BACKEND_SUFFIXES[suffix]


def _resolve_openvino(weights: str | Path) -> Path:
    """An OpenVINO file or folder as given, else of that name in ``$YOLO_WEIGHTS_DIR`` (folders are not files, so
    ``resolve_weights`` does not find them)."""
    p, wd = Path(weights), weights_dir()
    if not p.exists() and not p.is_absolute() and wd is not None and (wd / p.name).exists():
        return wd / p.name
    return p


def load_backend(weights: str | Path, device: str | torch.device = "cpu", fuse: bool = True,
                 threads: int | None = None) -> Backend:
    """Open ``weights`` (.pt, .torchscript, .onnx, or OpenVINO .xml or ``_openvino_model`` folder) on ``device``.

    Args:
        weights: a file, or a name found in ``$YOLO_WEIGHTS_DIR`` (as ``--weights`` everywhere).
        device: a torch device or ``--device`` string; ONNX models use the CUDA provider when it is installed,
            OpenVINO models always run on the CPU.
        fuse: fold Conv+BN of PyTorch checkpoints.
        threads: intra-op threads for ONNX Runtime and OpenVINO (default: each runtime's own choice).

    Raises:
        ValueError: an unsupported suffix (the message lists the supported ones) or a file the runtime cannot read.
        FileNotFoundError: no such file.
    """
    device = select_device(device)
    fmt = _format_of(weights)
    if fmt == "openvino":
        backend: Backend = OpenVINOBackend(_resolve_openvino(weights), device, threads=threads)
    elif fmt == "pytorch":
        backend = PyTorchBackend(resolve_weights(weights), device, fuse=fuse)
    elif fmt == "torchscript":
        backend = TorchScriptBackend(resolve_weights(weights), device)
    else:
        backend = ONNXBackend(resolve_weights(weights), device, threads=threads)
    LOGGER.info("Loaded %r", backend)
    return backend
