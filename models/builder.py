"""Build an nn.Sequential of layers from a YOLOv5-schema model dict (``backbone`` + ``head`` rows).

Each row is ``[from, number, module, args]``. Widths are scaled by ``width_multiple`` (rounded up to a multiple of 8)
and repeats by ``depth_multiple``, unless the dict says ``explicit_widths: true`` (widths that are no uniform multiple,
architectures written out as built), in which case every number is used as written. Per-leaf ``channels`` overrides
(pruned architectures) are applied afterwards by the Model (see the ``models`` package docstring).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from torch import nn

from models.registry import get_module
from models.summary import count_params

__all__ = ["make_divisible", "build_layers", "LayerInfo", "ModelConfigError"]

LOGGER = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """A model config that cannot be built; the message names the layer."""


@dataclass
class LayerInfo:
    """What the builder knows about one layer: its index, inputs, module name, args and output width."""

    index: int
    f: int | list[int]
    n: int
    name: str
    args: list
    c2: int


def make_divisible(x: float, divisor: int) -> int:
    """Smallest multiple of ``divisor`` that is >= ``x``."""
    return int(math.ceil(x / divisor) * divisor)


def _resolve_arg(a):  # noqa: ANN001, ANN202 - YAML scalars
    # YAML files write None/True/False and 'nearest' as strings in places; never eval them.
    if isinstance(a, str):
        return {"None": None, "True": True, "False": False}.get(a, a)
    return a


def build_layers(cfg: dict, ch: int = 3, nc: int | None = None) -> tuple[nn.Sequential, list[int], list[LayerInfo]]:
    """Build the layers of a model dict.

    Args:
        cfg: the model dict (``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone``, ``head``).
        ch: input image channels.
        nc: number of classes; overrides ``cfg['nc']`` when given.

    Returns:
        (layers, save, infos): the Sequential (each layer has attributes ``i`` index, ``f`` from, ``type`` name,
        ``np`` parameter count), the indices of outputs that later layers read, and a LayerInfo per layer.

    Raises:
        ModelConfigError: naming the layer, for unknown modules, bad ``from`` indices or malformed rows (including
            a trailing dict of keyword arguments, which the schema does not have).
    """
    nc = nc if nc is not None else cfg.get("nc")
    if nc is None:
        raise ModelConfigError("model config has no 'nc' (number of classes)")
    explicit = bool(cfg.get("explicit_widths", False))
    gd = 1.0 if explicit else float(cfg.get("depth_multiple", 1.0))
    gw = 1.0 if explicit else float(cfg.get("width_multiple", 1.0))
    anchors = cfg.get("anchors")
    rows = list(cfg.get("backbone", [])) + list(cfg.get("head", []))
    if not rows:
        raise ModelConfigError("model config has no 'backbone'/'head' rows")

    chs: list[int] = []  # output width of each layer built so far
    layers, save, infos = [], [], []
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ModelConfigError(f"layer {i}: expected [from, number, module, args], got {row!r}")
        f, n, name, args = row
        try:
            spec = get_module(name)
        except KeyError as e:
            raise ModelConfigError(f"layer {i}: {e.args[0]}") from None
        args = [_resolve_arg(a) for a in (args or [])]
        if any(isinstance(a, dict) for a in args):
            # Earlier versions passed a trailing dict as keyword arguments (hidden widths nothing ever set).
            raise ModelConfigError(f"layer {i} ({name}): args {args} hold a dict; rows take positional args only. "
                                   "Give widths in the row, or narrow a pruned layer through 'channels'")
        froms = f if isinstance(f, list) else [f]
        for j in froms:
            ok = isinstance(j, int) and ((i == 0 and j == -1) or (i > 0 and -i <= j < i))
            if not ok:
                raise ModelConfigError(f"layer {i} ({name}): 'from' index {j} does not point at an earlier layer")
        c_in = [ch] if i == 0 else [chs[j] for j in froms]
        n_ = max(round(n * gd), 1) if n > 1 else n

        if spec.kind in ("conv", "csp"):
            if not args:
                raise ModelConfigError(f"layer {i} ({name}): args must start with the output width")
            c1, c2 = c_in[0], args[0]
            if not isinstance(c2, int) or c2 < 1:
                raise ModelConfigError(f"layer {i} ({name}): output width must be a positive int, got {c2!r}")
            if not explicit:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if spec.kind == "csp":
                args.insert(2, n_)
                n_ = 1
        elif spec.kind == "concat":
            c2 = sum(c_in)
        elif spec.kind == "head":
            args = [nc if args and args[0] == "nc" else (args[0] if args else nc),
                    anchors if len(args) < 2 or args[1] == "anchors" else args[1], c_in, *args[2:]]
            c2 = 0
        else:
            c2 = c_in[0]

        try:
            m = nn.Sequential(*(spec.cls(*args) for _ in range(n_))) if n_ > 1 else spec.cls(*args)
        except (TypeError, ValueError) as e:
            raise ModelConfigError(f"layer {i} ({name}): cannot build with args {args}: {e}") from e
        m.i, m.f, m.type = i, f, name
        m.np = count_params(m)
        save.extend(j % i for j in froms if j != -1)
        layers.append(m)
        infos.append(LayerInfo(i, f, n_, name, args if spec.kind != "head" else args[:2], c2))
        chs.append(c2)
    return nn.Sequential(*layers), sorted(set(save)), infos
