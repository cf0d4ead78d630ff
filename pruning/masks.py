"""One global |gamma| threshold -> a keep-mask per channel group, with the safe-ratio check.

``percent`` is the share of candidate channels to remove: all candidates are ranked by score, ties broken by group
order and channel index, and exactly ``round(percent * candidates)`` of the lowest go (then each group's kept count is
rounded up to ``round_to``). A plain threshold comparison would remove far fewer than asked, or none, where many
gammas hold the same value (Adam-style updates and sign-based L1 steps make such ties). Candidates are the channels of
prunable groups; ``mode='normal'`` leaves residual groups out (as the seed recipes do), ``mode='shortcut'`` includes
them, scored jointly.

The *safe percent* is the largest share that leaves every group ``min_channels`` channels: the smallest, over groups,
of the number of candidates ranked below the group's ``min_channels``-th best channel; a larger ``percent`` is refused
with that figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.graph import ChannelGroup
from pruning.importance import bn_importance

__all__ = ["MODES", "ChannelMasks", "candidate_groups", "safe_max_percent", "compute_masks", "lowest_channels"]

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
        mode, percent, threshold, safe_percent, safe_threshold, round_to, min_channels: the choices and figures
            (``threshold``: the score of the lowest-ranked channel kept).
        scores: the channel scores used (``{group id: tensor}``).
        asked, candidates: channels the ranking removes (``round(percent * candidates)``) and candidate channels;
            rounding up to ``round_to`` may keep some of the asked ones (see :meth:`removed_channels`).
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
    asked: int = 0  # round(percent * candidates): the channels the ranking removes before rounding
    candidates: int = 0

    def mask(self, group: ChannelGroup) -> torch.Tensor:
        """The keep-mask of ``group`` (all True when it has none)."""
        m = self.masks.get(group.id)
        return m if m is not None else torch.ones(group.width, dtype=torch.bool)

    def removed_channels(self) -> int:
        """Number of group channels removed."""
        return sum(int((~self.mask(g)).sum()) for g in self.groups)


def _ranking(scores: dict[int, torch.Tensor], cands: list[ChannelGroup]) -> list[tuple[float, int, int]]:
    """Every candidate channel as ``(score, group position, channel index)``, lowest first: the removal order.

    Equal scores are taken from each group in proportion to its width (a channel's rank within its group over the
    group's width), so a tie spread over many groups thins them all alike instead of emptying the first one.
    """
    keyed = []
    for gi, g in enumerate(cands):
        vals = scores[g.id].float().tolist()
        for r, ci in enumerate(sorted(range(len(vals)), key=lambda i: (vals[i], i))):
            keyed.append((vals[ci], (r + 0.5) / len(vals), gi, ci))
    return [(v, gi, ci) for v, _, gi, ci in sorted(keyed)]


def _safe(order: list[tuple[float, int, int]], cands: list[ChannelGroup],
          min_channels: int) -> tuple[int, float, ChannelGroup | None]:
    """``(count, threshold, group)``: how many of the lowest-ranked channels can go before some group keeps fewer than
    ``min_channels``, the score of the channel where that happens, and its group."""
    seen = [0] * len(cands)
    for pos, (v, gi, _) in enumerate(order):
        seen[gi] += 1
        if cands[gi].width - seen[gi] < min(min_channels, cands[gi].width):
            return pos, v, cands[gi]
    return len(order), order[-1][0] if order else 0.0, None


def safe_max_percent(scores: dict[int, torch.Tensor], candidates: list[ChannelGroup],
                     min_channels: int = 1) -> tuple[float, float, ChannelGroup | None]:
    """The largest ``percent`` that leaves every candidate group ``min_channels`` channels.

    Returns:
        ``(percent, threshold, group)``: that share of the candidate channels, the score of the first channel that
        could not go (the smallest per-group ``min_channels``-th largest score) and its group (None without
        candidates).
    """
    cands = [g for g in candidates if g.id in scores]
    if not cands:
        return 0.0, 0.0, None
    order = _ranking(scores, cands)
    n, t, g = _safe(order, cands, min_channels)
    return n / len(order), t, g


def _top(s: torch.Tensor, k: int) -> torch.Tensor:
    """Keep-mask of the ``k`` highest scores (ties: the higher index is kept, as the removal order drops the lower
    first)."""
    order = sorted(range(s.numel()), key=lambda i: (-float(s[i]), -i))[:k]
    m = torch.zeros(s.numel(), dtype=torch.bool)
    m[order] = True
    return m


def compute_masks(model: nn.Module, groups: list[ChannelGroup], percent: float, mode: str = "normal",
                  min_channels: int = 1, round_to: int = 1, reduce: str = "mean",
                  scores: dict[int, torch.Tensor] | None = None, importance: str = "gamma") -> ChannelMasks:
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
        scores: precomputed scores (default: the model's BN gammas, scaled as ``importance`` says).
        importance: ``gamma`` or ``relative`` (see :mod:`pruning.importance`); unused when ``scores`` is given.

    Raises:
        ValueError: ``percent`` outside [0, 1) or above the safe percent (the message gives the safe figure), a bad
            ``mode``, ``min_channels`` or ``round_to``.
    """
    if not 0.0 <= percent < 1.0:
        raise ValueError(f"percent must be in [0, 1), got {percent}")
    if min_channels < 1 or round_to < 1:
        raise ValueError(f"min_channels and round_to must be >= 1, got {min_channels} and {round_to}")
    cands = candidate_groups(groups, mode)
    scores = scores if scores is not None else bn_importance(model, groups, reduce, importance)
    cands = [g for g in cands if g.id in scores]
    order = _ranking(scores, cands)
    n_safe, safe_t, worst = _safe(order, cands, min_channels)
    safe = n_safe / len(order) if order else 0.0
    if not cands and percent > 0:
        raise ValueError(f"percent {percent:g}: the model has no prunable channels in mode '{mode}' (no channel group "
                         f"scored by a BatchNorm; was the model fused?)")
    n_remove = round(percent * len(order))
    if n_remove > n_safe:
        raise ValueError(f"percent {percent:g} is above the highest safe percent {safe:.4f}: removing more than "
                         f"{n_safe} of the {len(order)} candidate channels ({importance} threshold {safe_t:.4g}, the "
                         f"largest of the channel group of {worst.name}) would leave that group fewer than {min_channels} "
                         f"channel(s). Use a percent <= {math.floor(safe * 1e4) / 1e4:.4f}, or train with (more) "
                         "sparsity first" + (", or rank by --importance relative" if importance == "gamma" else ""))
    removed = [torch.zeros(g.width, dtype=torch.bool) for g in cands]
    for _, gi, ci in order[:n_remove]:
        removed[gi][ci] = True
    threshold = order[n_remove][0] if n_remove < len(order) else (order[-1][0] if order else 0.0)
    masks: dict[int, torch.Tensor] = {}
    for g, rm in zip(cands, removed):
        keep = ~rm
        k = min(g.width, math.ceil(int(keep.sum()) / round_to) * round_to)
        masks[g.id] = keep if k == int(keep.sum()) else _top(scores[g.id], k)
    return ChannelMasks(groups, masks, mode, percent, threshold, safe, safe_t, round_to, min_channels, scores,
                        asked=n_remove, candidates=len(order))


def lowest_channels(scores: dict[int, torch.Tensor], candidates: list[ChannelGroup], percent: float,
                    min_channels: int = 1, round_to: int = 1) -> dict[int, torch.Tensor]:
    """The channels to drive to zero so that ``compute_masks(percent, round_to)`` can take them once trained: the
    lowest-ranked ``round(percent * candidates)`` in the removal order of :func:`compute_masks`, skipping (instead of
    refusing at) any that would leave its group fewer than ``max(min_channels, round_to)``, then in each group the
    next-lowest until its kept count is a multiple of ``round_to``. So at least the asked share is targeted, and
    every group keeps channels that are not: the prune at ``percent`` takes only targeted channels and is safe.

    Returns:
        ``{group id: bool tensor (width,)}``, True = targeted, for every candidate group with a score.
    """
    cands = [g for g in candidates if g.id in scores]
    order = _ranking(scores, cands)
    want = round(percent * len(order))
    floor = [min(max(min_channels, round_to), g.width) for g in cands]
    taken = [0] * len(cands)
    for _, gi, _ in order:
        if want == 0:
            break
        if cands[gi].width - taken[gi] > floor[gi]:
            taken[gi], want = taken[gi] + 1, want - 1
    out = {}
    for gi, g in enumerate(cands):
        keep = g.width - taken[gi]
        if keep < g.width:  # round the kept count down (never below the floor) by targeting more
            keep = max(floor[gi], keep // round_to * round_to)
        out[g.id] = ~_top(scores[g.id], keep)
    return out
