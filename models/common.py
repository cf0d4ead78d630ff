"""YOLOv5 building blocks: Conv, DWConv, Focus, Bottleneck, C3, SPP, SPPF, Concat; the torch layers the schema names.

State-dict key names (``conv``, ``bn``, ``cv1``, ``m`` ...) follow the official checkpoints so that they load as they are.
Inner widths follow from the constructor arguments as in YOLOv5; a pruned architecture narrows them through per-leaf
``channels`` overrides (see the ``models`` package docstring), not through extra arguments.
"""

from __future__ import annotations

import torch
from torch import nn

from models.registry import register_module

__all__ = ["autopad", "Conv", "DWConv", "Focus", "Bottleneck", "C3", "SPP", "SPPF", "Concat"]

# torch layers that YOLOv5 model YAML files name; their widths pass through unchanged.
for _cls in (nn.Upsample, nn.MaxPool2d, nn.Identity):
    register_module(f"nn.{_cls.__name__}", kind="identity")(_cls)
del _cls


def autopad(k: int | list[int], p: int | None = None, d: int = 1) -> int | list[int]:
    """Padding that keeps the spatial size ('same') for kernel ``k`` and dilation ``d``."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


def _activation(act: bool | nn.Module) -> nn.Module:
    if act is True:
        return nn.SiLU(inplace=True)
    return act if isinstance(act, nn.Module) else nn.Identity()


@register_module(kind="conv")
class Conv(nn.Module):
    """Conv2d + BatchNorm2d + activation (SiLU by default)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
                 act: bool | nn.Module = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward after the BN has been folded into the conv (see ``models.fuse``)."""
        return self.act(self.conv(x))


@register_module(kind="conv")
class DWConv(Conv):
    """Depthwise-style conv: groups = gcd(c1, c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool | nn.Module = True) -> None:
        super().__init__(c1, c2, k, s, g=_gcd(c1, c2), d=d, act=act)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@register_module(kind="conv")
class Focus(nn.Module):
    """Space-to-depth (2x2 pixels into channels) followed by a Conv, the YOLOv5 v1-v5 stem."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool | nn.Module = True) -> None:
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@register_module(kind="conv")
class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual add when ``shortcut`` and the widths match."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register_module(kind="csp")
class C3(nn.Module):
    """CSP bottleneck with 3 convs: cv1 -> n Bottlenecks, concatenated with cv2, fused by cv3 (hidden width c2 * e)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_module(kind="conv")
class SPP(nn.Module):
    """Spatial pyramid pooling with parallel max-pools of kernels ``k`` (YOLOv3-SPP)."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13)) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@register_module(kind="conv")
class SPPF(nn.Module):
    """Fast SPP: three chained max-pools of kernel k, equal to SPP(k=(5, 9, 13)) for k=5."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register_module(kind="concat")
class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension``."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)
