"""Channel importance: |gamma| of the BatchNorms on each group channel (network slimming, Liu et al. 2017).

Two scales for the one global threshold:

- ``gamma``: |gamma| as it is. Gammas of different layers are not on one scale in a pretrained network (the next
  BatchNorm undoes a layer's output scale), so one threshold can empty whole layers: on yolov5n.pt a 28% prune would
  take every channel of ``model.17.m.0.cv1`` and leave the P3 (small-object) path of the neck 8 channels wide.
- ``relative``: |gamma| over the mean |gamma| of its channel group, so each layer is judged against its own scale and
  the threshold thins all layers at comparable rates, more where a layer's gammas are spread (and sparsity training
  has driven some to 0, which stay at 0).
- ``taylor``: the loss's own first-order estimate of what zeroing a channel's gamma costs, (gamma * dL/dgamma)^2
  summed over training batches (Molchanov et al. 2019), on one scale for the whole network. Measured on yolov5n
  fine-tuned 40 epochs on aquarium (val mAP50-95 0.296), masking 30% of the prunable channels left 0.174 ranked by
  Taylor and 0.000 ranked by relative |gamma| (benchmarks/prune_criteria.py).
- ``taylor_flops``: Taylor importance per multiply-accumulate the channel costs (in the layers that make it and the
  layers that read it, at the image size): the greedy answer to "keep the most importance within a compute budget".
  Plain Taylor takes cheap channels first (30% of yolov5n's channels are 17% of its GFLOPs), so a GFLOPs target
  needs a much larger share of them.
"""

from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
from torch import nn

from pruning.graph import ChannelGroup
from utils.torch_utils import unwrap

__all__ = ["REDUCTIONS", "IMPORTANCES", "bn_importance", "taylor_importance", "group_sums", "channel_macs",
           "relative_macs"]

# How the |gamma| of several BatchNorms on one channel (a residual group) combine. The mean keeps a residual channel's
# score on the same scale as a single BN's, so one global threshold treats both alike; 'sum' and 'max' are stricter.
REDUCTIONS = ("mean", "sum", "max")
IMPORTANCES = ("gamma", "relative", "taylor", "taylor_flops")  # the Taylor ones need data: see taylor_importance


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
    if importance not in IMPORTANCES[:2]:
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


def taylor_importance(model: nn.Module, groups: list[ChannelGroup], batches: Iterable, loss_fn: Callable,
                      max_batches: int = 28) -> dict[int, torch.Tensor]:
    """Score each group channel by ``(gamma * dL/dgamma)^2`` summed over up to ``max_batches`` training batches.

    Args:
        model: the model (its weights are not changed; gradients are computed in training mode and cleared).
        groups: from :func:`pruning.graph.build_groups`.
        batches: yields ``(images uint8 (n, 3, h, w), targets, ...)`` as this project's dataloaders do.
        loss_fn: ``loss_fn(raw predictions, targets) -> (loss, items)`` (e.g. :class:`utils.loss.ComputeLoss`).
        max_batches: batches to accumulate over.

    Returns:
        ``{group.id: float32 CPU tensor of group.width scores}`` for every group with BatchNorm members.

    Raises:
        ValueError: ``batches`` yielded nothing.
    """
    net = copy.deepcopy(unwrap(model))  # training-mode passes would move the BN statistics of the model itself
    modules = dict(net.named_modules())
    paths = sorted({m.path for g in groups for m in g.bns})
    acc = {p: torch.zeros(modules[p].weight.numel()) for p in paths}
    device = next(net.parameters()).device
    net.train()
    n = 0
    try:
        for batch in batches:
            if n >= max_batches:
                break
            imgs, targets = batch[0], batch[1]
            net.zero_grad(set_to_none=True)
            loss, _ = loss_fn(net(imgs.to(device).float() / 255), targets.to(device))
            loss.sum().backward()
            for p in paths:
                w = modules[p].weight
                if w.grad is not None:
                    acc[p] += (w.detach() * w.grad.detach()).float().pow(2).cpu()
            n += 1
    finally:
        net.zero_grad(set_to_none=True)
    if n == 0:
        raise ValueError("taylor_importance: no batches to estimate the importance on")
    return group_sums(groups, acc)


def group_sums(groups: list[ChannelGroup], values: dict[str, torch.Tensor]) -> dict[int, torch.Tensor]:
    """``{group.id: per-channel sum over the group's BatchNorm members of values[bn path][channel]}``."""
    scores: dict[int, torch.Tensor] = {}
    for g in groups:
        if g.bns:
            s = torch.zeros(g.width)
            for m in g.bns:
                s.index_add_(0, torch.tensor(m.index, dtype=torch.long), values[m.path][m.positions].float().cpu())
            scores[g.id] = s
    return scores


@torch.no_grad()
def channel_macs(model: nn.Module, groups: list[ChannelGroup], imgsz: int) -> dict[int, torch.Tensor]:
    """Multiply-accumulates each group channel costs at ``imgsz`` x ``imgsz``: its share of every conv that produces it
    (one output channel), filters it depthwise, or reads it (one input channel; a channel read twice counts twice).

    Returns:
        ``{group.id: float32 tensor of group.width MACs}`` for every group with BatchNorm members.
    """
    net = unwrap(model)
    modules = dict(net.named_modules())
    area: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, p=p: area.__setitem__(p, o.shape[-2] * o.shape[-1]))
             for p, m in modules.items() if isinstance(m, nn.Conv2d)]
    was_training = net.training
    try:
        net.eval()
        p0 = next(net.parameters())
        net(torch.zeros(1, 3, imgsz, imgsz, device=p0.device, dtype=p0.dtype))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    costs: dict[int, torch.Tensor] = {}
    for g in groups:
        if not g.bns:
            continue
        c = torch.zeros(g.width)
        for m in g.members:
            conv = modules.get(m.path)
            if not isinstance(conv, nn.Conv2d) or m.path not in area:
                continue
            k = conv.kernel_size[0] * conv.kernel_size[1] * area[m.path]
            per = {"producer": conv.in_channels // conv.groups * k, "depthwise": k,
                   "consumer": conv.out_channels // conv.groups * k}.get(m.role)
            if per:
                c.index_add_(0, torch.tensor(m.index, dtype=torch.long), torch.full((len(m.index),), float(per)))
        costs[g.id] = c
    return costs


def relative_macs(model: nn.Module, groups: list[ChannelGroup], imgsz: int) -> dict[int, torch.Tensor]:
    """Each channel's :func:`channel_macs` in units of the mean channel's (at least 1e-6): what ``taylor_flops``
    divides the Taylor score by (prune.py) and scales sparsity by (training), on a scale that does not depend on the
    image size."""
    macs = channel_macs(model, groups, imgsz)
    unit = torch.cat(list(macs.values())).mean().clamp_min(1.0) if macs else torch.tensor(1.0)
    return {k: (v / unit).clamp_min(1e-6) for k, v in macs.items()}
