"""The YOLOv5 detection model, built from a model YAML/dict; ``python models/yolo.py --cfg yolov5s.yaml`` prints it."""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.builder import ModelConfigError, build_layers
from models.channels import apply_channel_overrides
from models.checks import detect_strides
from models.common import Conv
from models.detect import Detect
from models.fuse import fuse_conv_and_bn
from models.summary import model_summary
from utils.yaml_io import read_yaml

__all__ = ["Model", "load_model_config", "MODELS_DIR"]

MODELS_DIR = Path(__file__).resolve().parent


def load_model_config(cfg: str | Path | dict) -> dict:
    """Read a model YAML (a path, or a name found under ``models/``) or copy a dict.

    Raises:
        FileNotFoundError: when no such file exists (the message lists where it looked).
        ModelConfigError: when the YAML is not a mapping.
    """
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    p = Path(cfg)
    candidates = [p, MODELS_DIR / p, MODELS_DIR / p.name, MODELS_DIR / "hub" / p.name]
    if p.suffix == "":
        candidates += [c.with_suffix(".yaml") for c in candidates]
    for c in candidates:
        if c.is_file():
            d = read_yaml(c, "model config")
            if not isinstance(d, dict):
                raise ModelConfigError(f"{c}: a model config must be a YAML mapping")
            d.setdefault("yaml_file", c.name)
            return d
    raise FileNotFoundError(f"model config '{cfg}' not found (looked in: {', '.join(str(c) for c in candidates)})")


class Model(nn.Module):
    """A YOLOv5-schema detection model.

    Args:
        cfg: model YAML path/name or dict.
        ch: input channels.
        nc: number of classes (overrides the config's ``nc``).
        names: class names (default ``class0``...).
    """

    def __init__(self, cfg: str | Path | dict = "yolov5s.yaml", ch: int = 3, nc: int | None = None,
                 names: list[str] | None = None) -> None:
        super().__init__()
        self.yaml = load_model_config(cfg)
        if nc is not None and nc != self.yaml.get("nc"):
            self.yaml["nc"] = nc
        self.model, self.save, self.layer_infos = build_layers(self.yaml, ch=ch)
        if self.yaml.get("channels"):  # a pruned architecture: narrower leaves, before the stride forward pass
            apply_channel_overrides(self, self.yaml["channels"])
        nc = self.yaml["nc"]
        self.names = list(names) if names else [f"class{i}" for i in range(nc)]
        if not isinstance(self.model[-1], Detect):
            raise ModelConfigError(f"the last layer must be Detect, got {self.model[-1].type}")
        self._init_strides(ch)
        self._init_weights()
        if self.yaml.get("fused"):  # a checkpoint saved after fuse(): rebuild the same BN-free structure
            self.fuse()

    # -- construction ------------------------------------------------------------------------------------------------
    def _init_strides(self, ch: int) -> None:
        m = self.detect
        # Layer by layer, so that a shape, width or stride error names the layer instead of failing inside torch.
        # Declared widths are checked only before channel overrides: a pruned model's layers are narrower on purpose.
        infos = None if self.yaml.get("channels") else self.layer_infos
        strides = detect_strides(self.model, self.save, infos, ch)
        m.stride.copy_(torch.tensor(strides))
        _check_anchor_order(m)  # still in pixels here
        m.anchors /= m.stride.view(-1, 1, 1)
        self._init_biases()

    def _init_biases(self) -> None:
        """Prior for objectness (about 8 objects per 640 image) and class probability (0.6 / nc)."""
        m = self.detect
        with torch.no_grad():
            for conv, s in zip(m.m, m.stride):
                b = conv.bias.view(m.na, -1)  # a view: the in-place adds below change the parameter
                b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
                b[:, 5:5 + m.nc] += math.log(0.6 / (m.nc - 0.99)) if m.nc > 1 else 0.0

    def _init_weights(self) -> None:
        for mod in self.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.eps, mod.momentum = 1e-3, 0.03
            elif isinstance(mod, (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU)):
                mod.inplace = True

    # -- properties --------------------------------------------------------------------------------------------------
    @property
    def detect(self) -> Detect:
        """The Detect head (the last layer)."""
        return self.model[-1]

    @property
    def stride(self) -> torch.Tensor:
        """Strides of the detection levels (e.g. 8, 16, 32)."""
        return self.detect.stride

    @property
    def nc(self) -> int:
        """Number of classes."""
        return self.detect.nc

    # -- forward -----------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor):  # noqa: ANN201 - see Detect.forward for the output forms
        y: list[torch.Tensor | None] = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def fuse(self) -> Model:
        """Fold every Conv's BatchNorm into its conv weights (inference only); returns self."""
        for m in self.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                delattr(m, "bn")
                m.forward = m.forward_fuse
        self.yaml["fused"] = True
        return self

    def arch(self) -> dict:
        """The architecture dict this model was built from (plain Python values), for checkpoints."""
        return copy.deepcopy(self.yaml)

    def info(self, verbose: bool = False, imgsz: int = 640) -> dict:
        """Print (and return) a summary: layers, parameters, gradients, GFLOPs at ``imgsz``."""
        return model_summary(self, verbose=verbose, imgsz=imgsz)


def _check_anchor_order(m: Detect) -> None:
    """Anchors (in pixels) must grow with stride; reverse the levels when the config lists them the other way."""
    a = m.anchors.prod(-1).mean(-1).view(-1)
    da, ds = a[-1] - a[0], m.stride[-1] - m.stride[0]
    if da and da.sign() != ds.sign():
        m.anchors[:] = m.anchors.flip(0)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a model config and print its summary")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--imgsz", type=int, default=640, help="image size for the GFLOPs figure")
    parser.add_argument("--verbose", action="store_true", help="print every layer (default on)")
    args = parser.parse_args(argv)
    Model(args.cfg).info(verbose=True, imgsz=args.imgsz)


if __name__ == "__main__":
    _main()
