"""The YOLOv5 Detect head: one 1x1 output conv per level, anchor-based grid decoding."""

from __future__ import annotations

import torch
from torch import nn

from models.registry import register_module

__all__ = ["Detect"]


@register_module(kind="head")
class Detect(nn.Module):
    """Anchor-based detection head for ``nl`` feature levels.

    Args:
        nc: number of classes.
        anchors: per level a flat list of anchor (w, h) pairs in pixels, or an int (anchors per level, all zero).
        ch: input widths, one per level.
        inplace: decode in place (faster; turned off for export).

    The ``anchors`` buffer holds (nl, na, 2) anchors in grid units (pixels / stride) once the model has set ``stride``.
    Training mode returns the raw maps (bs, na, ny, nx, no); eval mode returns (decoded (bs, N, no), raw maps), where
    decoded rows are xywh in input pixels, objectness and class probabilities.
    """

    def __init__(self, nc: int = 80, anchors: list | int = (), ch: list[int] = (), inplace: bool = True) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(ch)
        if isinstance(anchors, int):
            anchors = [[0.0] * anchors * 2] * self.nl
        if len(anchors) != self.nl:
            raise ValueError(f"Detect: {len(anchors)} anchor rows for {self.nl} input levels")
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)  # set by the model
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.inplace = inplace
        self.export = False  # when True, eval forward returns only the decoded tensor

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]] | torch.Tensor:
        z = []
        x = list(x)
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                z.append(self._decode(i, x[i]))
        if self.training:
            return x
        out = torch.cat(z, 1)
        return out if self.export else (out, x)

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        bs, _, ny, nx, _ = p.shape
        grid, anchor_grid = self._grid(nx, ny, i, p)
        y = p.sigmoid()
        xy = (y[..., :2] * 2 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no)

    def _grid(self, nx: int, ny: int, i: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Recomputed each call: cheap next to the convs, and never stale after anchors or strides change.
        yv, xv = torch.meshgrid(torch.arange(ny, device=like.device, dtype=like.dtype),
                                torch.arange(nx, device=like.device, dtype=like.dtype), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(1, self.na, ny, nx, 2) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).to(like.dtype).view(1, self.na, 1, 1, 2).expand(
            1, self.na, ny, nx, 2)
        return grid, anchor_grid
