"""Channel importance: |gamma| of the BatchNorms on each group channel (network slimming, Liu et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

from pruning.graph import ChannelGroup, unwrap

__all__ = ["REDUCTIONS", "bn_importance"]

# How the |gamma| of several BatchNorms on one channel (a residual group) combine. The mean keeps a residual channel's
# score on the same scale as a single BN's, so one global threshold treats both alike; 'sum' and 'max' are stricter.
REDUCTIONS = ("mean", "sum", "max")


def bn_importance(model: nn.Module, groups: list[ChannelGroup], reduce: str = "mean") -> dict[int, torch.Tensor]:
    """Score each group channel by the |gamma| of its BatchNorm members.

    Args:
        model: the model the groups were built from (DDP wrappers are unwrapped).
        groups: from :func:`pruning.graph.build_groups`.
        reduce: how BNs sharing a channel combine: ``mean`` (default), ``sum`` or ``max``.

    Returns:
        ``{group.id: float32 CPU tensor of group.width scores}`` for every group that has BatchNorm members.

    Raises:
        ValueError: an unknown ``reduce``.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got '{reduce}'")
    modules = dict(unwrap(model).named_modules())
    op = {"mean": "mean", "sum": "sum", "max": "amax"}[reduce]
    scores: dict[int, torch.Tensor] = {}
    for g in groups:
        bns = g.bns
        if not bns:
            continue
        idx = torch.cat([torch.tensor(m.index, dtype=torch.long) for m in bns])
        val = torch.cat([modules[m.path].weight.detach().float().abs().cpu()[m.positions] for m in bns])
        scores[g.id] = torch.zeros(g.width).scatter_reduce(0, idx, val, reduce=op, include_self=False)
    return scores
