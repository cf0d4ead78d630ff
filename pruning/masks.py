"""One global |gamma| threshold -> a keep-mask per channel group, with the safe-ratio check.

``percent`` is the share of candidate channels to remove: the threshold is the score at that rank in the sorted scores
of all candidates, and channels strictly below it go. Candidates are the channels of prunable groups; ``mode='normal'``
leaves residual groups out (as the seed recipes do), ``mode='shortcut'`` includes them, scored jointly.

The highest safe threshold is the smallest per-group maximum score: above it some group loses every channel. The
matching *safe percent* is the share of candidates strictly below it; a larger ``percent`` is refused with that figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.graph import ChannelGroup
from pruning.importance import bn_importance

__all__ = ["MODES", "ChannelMasks", "candidate_groups", "safe_max_percent", "compute_masks"]

MODES = ("normal", "shortcut")


def candidate_groups(groups: list[ChannelGroup], mode: str = "normal") -> list[ChannelGroup]:
    """Groups whose channels may be removed under ``mode`` (prunable; residual ones only in ``shortcut`` mode).

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    return [g for g in groups if g.prunable and (mode == "shortcut" or not g.residual)]


@dataclass
class ChannelMasks:
    """Keep-masks per group and how they were chosen.

    Attributes:
        groups: all groups of the model.
        masks: ``{group id: bool tensor (width,)}``, True = keep; a group missing here keeps everything.
        mode, percent, threshold, safe_percent, safe_threshold, round_to, min_channels: the choices and figures.
        scores: the channel scores used (``{group id: tensor}``).
    """

    groups: list[ChannelGroup]
    masks: dict[int, torch.Tensor]
    mode: str = "normal"
    percent: float = 0.0
    threshold: float = 0.0
    safe_percent: float = float("nan")
    safe_threshold: float = float("nan")
    round_to: int = 1
    min_channels: int = 1
    scores: dict[int, torch.Tensor] = field(default_factory=dict)

    def mask(self, group: ChannelGroup) -> torch.Tensor:
        """The keep-mask of ``group`` (all True when it has none)."""
        m = self.masks.get(group.id)
        return m if m is not None else torch.ones(group.width, dtype=torch.bool)

    def removed_channels(self) -> int:
        """Number of group channels removed."""
        return sum(int((~self.mask(g)).sum()) for g in self.groups)


def _kth_largest(s: torch.Tensor, k: int) -> float:
    return float(s.topk(min(k, s.numel())).values[-1])


def safe_max_percent(scores: dict[int, torch.Tensor], candidates: list[ChannelGroup],
                     min_channels: int = 1) -> tuple[float, float, ChannelGroup | None]:
    """The largest ``percent`` that leaves every candidate group ``min_channels`` channels.

    Returns:
        ``(percent, threshold, group)``: the share of candidate channels strictly below the threshold, the threshold
        (the smallest per-group ``min_channels``-th largest score) and the group that sets it (None without candidates).
    """
    cands = [g for g in candidates if g.id in scores]
    if not cands:
        return 0.0, 0.0, None
    limits = [(_kth_largest(scores[g.id], min_channels), g) for g in cands]
    t, g = min(limits, key=lambda x: x[0])
    allv = torch.cat([scores[c.id] for c in cands])
    return float((allv < t).sum()) / allv.numel(), t, g


def _top(s: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of the ``k`` highest scores (ties: lower index first)."""
    order = sorted(range(s.numel()), key=lambda i: (-float(s[i]), i))[:k]
    m = torch.zeros(s.numel(), dtype=torch.bool)
    m[order] = True
    return m


def compute_masks(model: nn.Module, groups: list[ChannelGroup], percent: float, mode: str = "normal",
                  min_channels: int = 1, round_to: int = 1, reduce: str = "mean",
                  scores: dict[int, torch.Tensor] | None = None) -> ChannelMasks:
    """Choose the global threshold for ``percent`` and the keep-mask of every group.

    Args:
        model: the model (for the BN gammas; unused when ``scores`` is given).
        groups: from :func:`pruning.graph.build_groups`.
        percent: share of candidate channels to remove, in [0, 1); 0 removes nothing.
        mode: ``normal`` (residual groups untouched) or ``shortcut`` (residual groups pruned jointly).
        min_channels: channels every group keeps at least.
        round_to: round each group's kept count up to a multiple of this (capped at its width), keeping the
            best-scored channels; 8 suits GPUs.
        reduce: how several BNs on one channel combine (see :func:`pruning.importance.bn_importance`).
        scores: precomputed scores (default: |gamma| of the model's BNs).

    Raises:
        ValueError: ``percent`` outside [0, 1) or above the safe percent (the message gives the safe figure), a bad
            ``mode``, ``min_channels`` or ``round_to``.
    """
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"percent must be in [0, 1), got {percent}")
    if min_channels < 1 or round_to < 1:
        raise ValueError(f"min_channels and round_to must be >= 1, got {min_channels} and {round_to}")
    cands = candidate_groups(groups, mode)
    scores = scores if scores is not None else bn_importance(model, groups, reduce)
    cands = [g for g in cands if g.id in scores]
    safe, safe_t, worst = safe_max_percent(scores, cands, min_channels)
    if worst is None and percent > 0:
        raise ValueError(f"percent {percent:g}: the model has no prunable channels in mode '{mode}' (no channel group "
                         f"scored by a BatchNorm; was the model fused?)")
    if percent > safe + 1e-9:
        raise ValueError(f"percent {percent:g} is above the highest safe percent {safe:.4f}: any threshold above "
                         f"{safe_t:.4g} (the largest |gamma| of the channel group of {worst.name}) would leave that "
                         f"group fewer than {min_channels} channel(s). Use a percent <= "
                         f"{math.floor(safe * 1e4) / 1e4:.4f}, or train with (more) sparsity first")
    allv = torch.sort(torch.cat([scores[g.id] for g in cands])).values if cands else torch.zeros(0)
    threshold = float(allv[min(math.floor(percent * allv.numel() + 1e-9), allv.numel() - 1)]) if cands else 0.0
    masks: dict[int, torch.Tensor] = {}
    for g in cands:
        s = scores[g.id]
        keep = s >= threshold
        k = max(int(keep.sum()), min(min_channels, g.width))
        k = min(g.width, math.ceil(k / round_to) * round_to)
        masks[g.id] = keep if k == int(keep.sum()) else _top(s, k)
    return ChannelMasks(groups, masks, mode, percent, threshold, safe, safe_t, round_to, min_channels, scores)
