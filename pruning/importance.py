"""Channel importance: |gamma| of the BatchNorms on each group channel (network slimming, Liu et al. 2017).

Two scales for the one global threshold:

- ``gamma``: |gamma| as it is. Gammas of different layers are not on one scale in a pretrained network (the next
  BatchNorm undoes a layer's output scale), so one threshold can empty whole layers: on yolov5n.pt a 28% prune would
  take every channel of ``model.17.m.0.cv1`` and leave the P3 (small-object) path of the neck 8 channels wide.
- ``relative``: |gamma| over the mean |gamma| of its channel group, so each layer is judged against its own scale and
  the threshold thins all layers at comparable rates, more where a layer's gammas are spread (and sparsity training
  has driven some to 0, which stay at 0).
"""

from __future__ import annotations

import torch
from torch import nn

from pruning.graph import ChannelGroup, unwrap

__all__ = ["REDUCTIONS", "IMPORTANCES", "bn_importance"]

# How the |gamma| of several BatchNorms on one channel (a residual group) combine. The mean keeps a residual channel's
# score on the same scale as a single BN's, so one global threshold treats both alike; 'sum' and 'max' are stricter.
REDUCTIONS = ("mean", "sum", "max")
IMPORTANCES = ("gamma", "relative")


def bn_importance(model: nn.Module, groups: list[ChannelGroup], reduce: str = "mean",
                  importance: str = "gamma") -> dict[int, torch.Tensor]:
    """Score each group channel by the |gamma| of its BatchNorm members.

    Args:
        model: the model the groups were built from (DDP wrappers are unwrapped).
        groups: from :func:`pruning.graph.build_groups`.
        reduce: how BNs sharing a channel combine: ``mean`` (default), ``sum`` or ``max``.
        importance: ``gamma`` (the scores as they are) or ``relative`` (each group's scores over their mean; see the
            module docstring).

    Returns:
        ``{group.id: float32 CPU tensor of group.width scores}`` for every group that has BatchNorm members.

    Raises:
        ValueError: an unknown ``reduce`` or ``importance``.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got '{reduce}'")
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got '{importance}'")
    modules = dict(unwrap(model).named_modules())
    op = {"mean": "mean", "sum": "sum", "max": "amax"}[reduce]
    scores: dict[int, torch.Tensor] = {}
    for g in groups:
        bns = g.bns
        if not bns:
            continue
        idx = torch.cat([torch.tensor(m.index, dtype=torch.long) for m in bns])
        val = torch.cat([modules[m.path].weight.detach().float().abs().cpu()[m.positions] for m in bns])
        s = torch.zeros(g.width).scatter_reduce(0, idx, val, reduce=op, include_self=False)
        if importance == "relative":
            s = s / s.mean().clamp_min(1e-12)
        scores[g.id] = s
    return scores
