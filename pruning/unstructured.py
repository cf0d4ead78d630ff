"""Unstructured magnitude pruning (``val.py --prune 0.3``): zero the smallest conv weights globally.

This makes the checkpoint compressible (many exact zeros) but not faster: dense convolution kernels multiply zeros at
full cost. Structured channel pruning (:mod:`pruning.surgery`) is what removes work.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["prune_unstructured", "conv_sparsity"]

LOGGER = logging.getLogger(__name__)


def conv_sparsity(model: nn.Module) -> float:
    """Share of exactly-zero weights over all Conv2d layers."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / max(total, 1)


def prune_unstructured(model: nn.Module, amount: float) -> float:
    """Zero the ``amount`` share of smallest-magnitude Conv2d weights (one global L1 ranking), made permanent.

    Returns:
        the conv-weight sparsity reached (also printed).
    """
    if not 0 <= amount < 1:
        raise ValueError(f"--prune must be in [0, 1), got {amount}")
    params = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        for m, name in params:
            prune.remove(m, name)  # bake the mask into the weight; no reparametrisation left behind
    s = conv_sparsity(model)
    print(f"Unstructured pruning: {s:.1%} of conv weights are now zero (asked {amount:.0%})")
    return s
