"""Fold the constant outputs of removed channels into the layers that read them (``prune_model(fold_beta=True)``).

A channel whose gamma is 0 still outputs a constant, act(beta). Removing it exactly means adding its effect to the
next layer: for a conv, ``bias += sum over the kernel of weight[:, removed] * c``; for a bias-free conv followed by a
BatchNorm, ``running_mean -= that`` (exact in eval mode); for a linear, ``bias += weight[:, removed] @ c``.

The constants are read, not derived: the masked reference model (gamma zeroed, beta kept) runs once with hooks on the
readers, so whatever lies between the BN and the reader (activation, upsample, max-pool, concat, a residual add of
two removed channels) is accounted for. Exact for 1x1 readers; for kxk readers with zero padding the constant does
not reach the border taps, so the fold is an approximation there. A value that is not constant (e.g. scaled by a
squeeze-excite gate) is folded by its mean and reported.
"""

from __future__ import annotations

import torch
from torch import nn

from pruning.masked import masked_model
from pruning.masks import ChannelMasks
from pruning.trace import trace_channels

__all__ = ["fold_constants"]


def _capture_inputs(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each module in ``paths`` receives when ``model`` runs on ``x`` (first call)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for path in paths:
        def hook(_m: nn.Module, args: tuple, p: str = path) -> None:
            seen.setdefault(p, args[0].detach())
        handles.append(model.get_submodule(path).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def fold_constants(src: nn.Module, plan: ChannelMasks, new: nn.Module, keeps: dict[str, dict[str, list[int]]],
                   depthwise: set[str], x: torch.Tensor) -> list[str]:
    """Fold removed channels' constants into ``new`` (the pruned model) in place; returns notes for the report.

    Args:
        src: the unpruned model.
        plan: the masks.
        new: the pruned model built from ``src`` with ``keeps``.
        keeps: from :func:`pruning.surgery.leaf_keeps`.
        depthwise: depthwise conv paths (their removed channels vanish with the channel, nothing to fold).
        x: an input to run the masked reference on.
    """
    readers = [p for p, k in keeps.items() if "in" in k and p not in depthwise]
    if not readers:
        return []
    ref = masked_model(src, plan, keep_beta=True)
    inputs = _capture_inputs(ref, readers, x)
    bn_after = trace_channels(src, x).bn_after
    old_mods, new_mods = dict(src.named_modules()), dict(new.named_modules())
    notes: list[str] = []
    border: list[str] = []  # kxk readers: the fold is approximate at their zero-padded borders
    with torch.no_grad():
        for path in readers:
            old, k = old_mods[path], keeps[path]
            if getattr(old, "groups", 1) != 1:  # grouped readers are never narrowed (their inputs are unprunable)
                continue
            n_in = old.in_channels if isinstance(old, nn.Conv2d) else old.in_features
            gone = sorted(set(range(n_in)) - set(k["in"]))
            v = inputs[path][:, gone].transpose(0, 1).reshape(len(gone), -1).float()
            c = v.mean(1)
            spread = float((v.amax(1) - v.amin(1)).max())
            if spread > 1e-5 * (1.0 + float(c.abs().max())):
                notes.append(f"{path}: removed inputs are not constant (spread {spread:.3g}); folded their mean")
            w = old.weight[:, gone].float()
            delta = (w.sum((2, 3)) if w.ndim == 4 else w) @ c
            if w.ndim == 4 and max(old.kernel_size) > 1:
                border.append(path)
            if "out" in k:
                delta = delta[k["out"]]
            target = new_mods[path]
            if target.bias is not None:
                target.bias += delta.to(target.bias.dtype)
            elif path in bn_after:
                bn = new_mods[bn_after[path]]
                bn.running_mean -= delta.to(bn.running_mean.dtype)
            else:
                notes.append(f"{path}: no bias and no BatchNorm after it; the removed constants are dropped")
    if border:
        notes.append(f"fold approximate at the zero-padded borders of {len(border)} kxk reader(s): {', '.join(border)}")
    return notes
