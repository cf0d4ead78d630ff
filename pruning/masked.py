"""The masked reference model: removed channels silenced by zeroing their BatchNorm parameters, shapes unchanged."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pruning.masks import ChannelMasks
from utils.torch_utils import unwrap

__all__ = ["masked_model"]


def masked_model(model: nn.Module, plan: ChannelMasks, keep_beta: bool = False) -> nn.Module:
    """A copy of ``model`` where every removed channel's BN gamma is 0 (and beta too unless ``keep_beta``).

    Removed channels then output act(0) (0 for SiLU/ReLU), or the constant act(beta) when beta is kept: the
    references that :func:`prune_model` matches without and with ``fold_beta``.
    """
    m = copy.deepcopy(unwrap(model))
    mods = dict(m.named_modules())
    with torch.no_grad():
        for g in plan.groups:
            mask = plan.mask(g)
            if bool(mask.all()):
                continue
            keep = mask.tolist()
            for mem in g.bns:
                gone = [p for p, k in zip(mem.positions, mem.index) if not keep[k]]
                mods[mem.path].weight[gone] = 0.0
                if not keep_beta:
                    mods[mem.path].bias[gone] = 0.0
    return m
