"""GhostNet blocks as YOLOv5 uses them (Han et al. 2020): GhostConv, GhostBottleneck and C3Ghost.

Sub-module names (``cv1``, ``cv2``, ``conv``, ``shortcut``, ``m``) follow the official yolov5s-ghost checkpoints, so their
state dicts line up key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from models.common import Conv, DWConv
from models.registry import register_module

__all__ = ["GhostConv", "GhostBottleneck", "C3Ghost"]


@register_module(kind="conv")
class GhostConv(nn.Module):
    """Ghost module: a primary conv makes ``c2 / 2`` maps, a cheap 5x5 depthwise conv makes as many more; concat.

    Args:
        c1: input width.
        c2: output width (even).
        k: primary conv kernel.
        s: primary conv stride.
        g: primary conv groups.
        act: activation of both convs (``True``: SiLU).
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__()
        if c2 % 2:
            raise ValueError(f"GhostConv: output width {c2} must be even (half primary, half cheap maps)")
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@register_module(kind="conv")
class GhostBottleneck(nn.Module):
    """GhostConv -> (depthwise kxk stride 2 when ``s == 2``) -> GhostConv without activation, plus a shortcut.

    The shortcut is the identity at stride 1 and a depthwise kxk stride-2 conv followed by a 1x1 conv at stride 2.

    Args:
        c1: input width.
        c2: output width.
        k: depthwise kernel.
        s: stride (1 or 2).

    The width between the two GhostConvs is ``c2 // 2``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"GhostBottleneck: stride must be 1 or 2, got {s}")
        if s == 1 and c1 != c2:
            raise ValueError(f"GhostBottleneck: stride 1 adds the input back, so c1 ({c1}) must equal c2 ({c2})")
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


@register_module(kind="csp")
class C3Ghost(nn.Module):
    """C3 whose bottlenecks are GhostBottlenecks: cv1 -> n GhostBottlenecks, concatenated with cv2, fused by cv3.

    Written out rather than subclassing C3, so that code looking for ``C3`` never meets GhostBottlenecks in ``m``.
    ``shortcut`` and ``g`` are accepted for YAML compatibility with C3 rows; a GhostBottleneck always adds its input.

    Args:
        c1: input width.
        c2: output width.
        n: number of GhostBottlenecks.
        shortcut: unused (see above).
        g: unused.
        e: hidden width ratio (cv1 and cv2 are ``c2 * e`` wide).
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))
