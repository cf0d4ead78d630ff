"""ShuffleNetV2 unit (Ma et al. 2018, Fig. 3 c and d).

Stride 1: split the channels, run one part through 1x1 -> 3x3 depthwise -> 1x1, pass the other part through, concat,
shuffle with 2 groups. Stride 2: no split; a left branch (3x3 depthwise stride 2, 1x1) and a right branch
(1x1, 3x3 depthwise stride 2, 1x1) both see the whole input; concat, shuffle.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones.layers import channel_shuffle
from models.common import Conv
from models.registry import register_module

__all__ = ["ShuffleV2Block"]


@register_module(kind="conv")
class ShuffleV2Block(nn.Module):
    """ShuffleNetV2 basic (``s == 1``) or down-sampling (``s == 2``) unit; 1x1 convs use ReLU, depthwise convs none.

    Args:
        c1: input width.
        c2: output width (even: the output is shuffled in 2 groups).
        s: stride (1 or 2).

    Before the shuffle the output is two parts: the pass-through part (``s == 1``: ``c1 // 2`` input channels) or the
    left branch (``s == 2``: ``c2 // 2``), then the right branch (the rest of ``c2``, also its inner width). A pruned
    unit narrows its branch convs through ``channels`` overrides; ``forward`` then splits where the branch expects.
    """

    def __init__(self, c1: int, c2: int, s: int = 1) -> None:
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"ShuffleV2Block: stride must be 1 or 2, got {s}")
        if c2 % 2:
            raise ValueError(f"ShuffleV2Block: output width {c2} must be even for the 2-group channel shuffle")
        self.downsample = s == 2
        split = c2 // 2 if self.downsample else c1 // 2
        c_right = c2 - split
        c_in_right = c1 if self.downsample else c1 - split
        if min(split, c_right, c_in_right) < 1:
            raise ValueError(f"ShuffleV2Block: c1={c1}, c2={c2} leave an empty branch (split at {split})")
        if self.downsample:
            self.branch1 = nn.Sequential(Conv(c1, c1, 3, s, g=c1, act=False), Conv(c1, split, 1, 1, act=nn.ReLU()))
        self.branch2 = nn.Sequential(
            Conv(c_in_right, c_right, 1, 1, act=nn.ReLU()),
            Conv(c_right, c_right, 3, s, g=c_right, act=False),
            Conv(c_right, c_right, 1, 1, act=nn.ReLU()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        else:
            # The split point comes from the tensor and the branch's current first conv, not from a width stored at
            # construction: a pruned copy with a narrower branch still splits where its conv expects.
            k = x.shape[1] - self.branch2[0].conv.in_channels
            out = torch.cat((x[:, :k], self.branch2(x[:, k:])), 1)
        return channel_shuffle(out, 2)
