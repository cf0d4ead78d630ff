"""MobileNetV2 inverted residual and MobileNetV3 bottleneck blocks.

Rows in the model YAML files follow the papers' tables one block per row (Sandler et al. 2018, Table 2; Howard et al.
2019, Tables 1 and 2), so that every block carries its own widths and a pruned architecture can state them one by one.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones.layers import SqueezeExcite, make_activation
from models.common import Conv
from models.registry import register_module

__all__ = ["InvertedResidual", "MobileNetV3Block"]


@register_module(kind="conv")
class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion (ReLU6), 3x3 depthwise with stride (ReLU6), linear 1x1 projection.

    The expansion is left out when ``t == 1`` (the depthwise conv then works on the input directly). The input is
    added back when the stride is 1 and the widths match.

    Args:
        c1: input width.
        c2: output width.
        s: depthwise stride (1 or 2).
        t: expansion factor; the hidden width is ``round(c1 * t)``.
    """

    def __init__(self, c1: int, c2: int, s: int = 1, t: float = 6) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {s}")
        expand = t != 1
        c_ = int(round(c1 * t)) if expand else c1
        self.expand = Conv(c1, c_, 1, 1, act=nn.ReLU6()) if expand else nn.Identity()
        self.dw = Conv(c_, c_, 3, s, g=c_, act=nn.ReLU6())
        self.project = Conv(c_, c2, 1, 1, act=False)
        self.add = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.add else y


@register_module(kind="conv")
class MobileNetV3Block(nn.Module):
    """MobileNetV3 bottleneck ("bneck"): 1x1 expansion, kxk depthwise with stride, optional squeeze-excite, linear 1x1.

    YAML args follow the paper's table columns: ``[out, k, exp, se, act, s]``. The expansion conv is left out when
    ``exp`` equals the input width. The residual add is used when the stride is 1 and the widths match.

    Args:
        c1: input width.
        c2: output width ("#out").
        k: depthwise kernel size (3 or 5).
        exp: expansion width ("exp size"), used as written (it is not scaled by ``width_multiple``).
        se: whether the block has squeeze-excite (inner width ``make_divisible(exp / 4, 8)``).
        act: non-linearity of the expansion and depthwise convs: ``relu`` (RE) or ``hswish`` (HS).
        s: depthwise stride (1 or 2).
    """

    def __init__(self, c1: int, c2: int, k: int = 3, exp: int | None = None, se: bool = False, act: str = "relu",
                 s: int = 1) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"MobileNetV3Block: stride must be 1 or 2, got {s}")
        if k % 2 == 0:
            raise ValueError(f"MobileNetV3Block: kernel size must be odd, got {k}")
        c_ = exp if exp is not None else c1
        self.expand = Conv(c1, c_, 1, 1, act=make_activation(act)) if c_ != c1 else nn.Identity()
        self.dw = Conv(c_, c_, k, s, g=c_, act=make_activation(act))
        self.se = SqueezeExcite(c_) if se else nn.Identity()
        self.project = Conv(c_, c2, 1, 1, act=False)
        self.add = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.add else y
