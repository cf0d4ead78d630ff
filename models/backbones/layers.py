"""Pieces shared by the lightweight backbones: activations by name, a conv stem, squeeze-excite, channel shuffle.

Every forward here reads channel counts from the tensors it receives, never from widths fixed at construction, so a
pruned copy whose convs were replaced by narrower ones keeps working.
"""

from __future__ import annotations

from types import MappingProxyType

import torch
from torch import nn

from models.builder import make_divisible
from models.common import Conv
from models.registry import register_module

__all__ = ["ACTIVATIONS", "make_activation", "ConvBNAct", "SqueezeExcite", "channel_shuffle"]

# Names usable in model YAML files (strings, so that no YAML value is ever evaluated). Read-only on purpose.
ACTIVATIONS = MappingProxyType({
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "hardswish": nn.Hardswish,
    "hsigmoid": nn.Hardsigmoid,
    "silu": nn.SiLU,
    "none": nn.Identity,
    "linear": nn.Identity,
})


def make_activation(act: str | bool | nn.Module) -> nn.Module:
    """A fresh activation module from a YAML name (``relu``, ``relu6``, ``hswish``, ``silu``, ``none`` ...).

    ``True`` gives SiLU (the YOLOv5 default), ``False``/``None`` no activation, and a module is returned as it is.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(act, nn.Module):
        return act
    if act is True:
        return nn.SiLU()
    if act is False or act is None:
        return nn.Identity()
    key = str(act).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{act}'; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[key]()


@register_module(kind="conv")
class ConvBNAct(Conv):
    """Conv2d + BatchNorm2d + a named activation: the stems of MobileNetV2 (relu6), V3 (hswish), ShuffleNetV2 (relu).

    A subclass of :class:`models.common.Conv` so that BN folding and slimming treat it like any other Conv.

    Args:
        c1: input width.
        c2: output width.
        k: kernel size.
        s: stride.
        act: activation name (see :func:`make_activation`).
        g: groups.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: str | bool = "relu", g: int = 1) -> None:
        super().__init__(c1, c2, k, s, g=g, act=make_activation(act))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite as in MobileNetV3: global average pool, 1x1 conv + ReLU, 1x1 conv + hard-sigmoid, rescale.

    Args:
        c: width of the feature map it rescales.
        hidden: inner width; default ``make_divisible(c / 4, 8)`` (the MobileNetV3 reduction).
    """

    def __init__(self, c: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden if hidden is not None else make_divisible(c / 4, 8)
        self.fc1 = nn.Conv2d(c, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet channel shuffle: view channels as (groups, c / groups), transpose, flatten.

    With 2 groups, output channel ``2j`` is input channel ``j`` and ``2j + 1`` is ``c/2 + j``. The inverse of a
    shuffle with ``g`` groups is a shuffle with ``c / g`` groups.

    Raises:
        ValueError: the channel count (read from ``x``) does not divide by ``groups``.
    """
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels do not split into {groups} groups")
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)
