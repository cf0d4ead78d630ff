"""Checkpoints back into models: the architecture from the checkpoint (pruned ones included), the weights loaded
strictly. The files themselves (reading, checking, writing atomically) are :mod:`utils.checkpoint`'s."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from models.yolo import Model
from utils.checkpoint import CheckpointError, load_checkpoint, load_weights, resolve_weights

__all__ = ["is_pruned_arch", "arch_for_classes", "model_from_checkpoint", "load_model"]

LOGGER = logging.getLogger(__name__)


def is_pruned_arch(arch: dict) -> bool:
    """True when an architecture dict carries explicit (pruned) channel counts."""
    return bool(arch.get("channels"))


def arch_for_classes(arch: dict, nc: int) -> dict:
    """An architecture dict re-headed for ``nc`` classes: the Detect output convs get ``na * (nc + 5)`` outputs.

    Unpruned architectures only change ``nc`` (the builder derives the head's widths from it); pruned ones also
    rewrite the explicit channel counts of the output convs.
    """
    if not is_pruned_arch(arch):
        return {**arch, "nc": nc}
    old_nc = arch["nc"]
    detect = len(arch["backbone"]) + len(arch["head"]) - 1
    channels = dict(arch["channels"])
    for name, shape in channels.items():
        if name.startswith(f"model.{detect}.m."):
            channels[name] = [shape[0], shape[1] // (old_nc + 5) * (nc + 5), *shape[2:]]
    return {**arch, "nc": nc, "channels": channels}


def model_from_checkpoint(ckpt: dict, path: str | Path, entry: str, *, names: list[str] | None = None,
                          nc: int | None = None, rehead: bool = False, device: str | torch.device = "cpu",
                          inference: bool = False, fuse: bool = False, half: bool = False) -> torch.nn.Module:
    """Turn a checkpoint (as :func:`load_checkpoint` returns it) back into a model: the one way every caller does it.

    The architecture always comes from the checkpoint (pruned models need no extra flags) and the weights load
    strictly, as fp32: a tensor missing, unexpected or of another shape is an error naming the file.

    Args:
        ckpt: the checkpoint dict.
        path: the file it came from, named in errors.
        entry: ``'ema'`` (the averaged weights a training checkpoint holds; checkpoints without them, such as
            finished runs, official and pruned ones, keep their weights under ``'model'``, which is taken instead) or
            ``'model'`` (the raw weights, as resuming needs).
        names: class names (default: the checkpoint's).
        nc: the number of classes the model must have (default: the checkpoint's).
        rehead: allow ``nc`` to differ from the checkpoint's: the Detect output convs are rebuilt for ``nc`` classes
            and keep their fresh initialisation, every other tensor loads strictly (fine-tuning on other classes).
        device: where the model goes.
        inference: return it in eval mode (else in train mode, as a freshly built model).
        fuse: fold BatchNorms into convs (inference only).
        half: cast to fp16 (inference only).

    Raises:
        CheckpointError: the weights do not fit the architecture, the entry is missing, or ``nc`` differs from the
            checkpoint's without ``rehead``; the message names the file.
        ValueError: an unknown ``entry``, or ``fuse``/``half`` without ``inference``.
    """
    if entry not in ("ema", "model"):
        raise ValueError(f"model_from_checkpoint: entry must be 'ema' or 'model', got {entry!r}")
    if (fuse or half) and not inference:
        raise ValueError("model_from_checkpoint: fuse and half are for inference models (inference=True)")
    if entry == "ema" and not (isinstance(ckpt.get("ema"), dict) and ckpt["ema"]):
        entry = "model"
    if not isinstance(ckpt.get(entry), dict):
        raise CheckpointError(f"{path}: checkpoint has no '{entry}' weights")
    arch, old_nc = ckpt["arch"], int(ckpt.get("nc", ckpt["arch"].get("nc", 0)))
    nc = old_nc if nc is None else nc
    if nc != old_nc and not rehead:
        raise CheckpointError(f"{path}: the checkpoint's model has {old_nc} classes, {nc} are needed")
    model = Model(arch_for_classes(arch, nc) if nc != old_nc else arch, nc=nc,
                  names=names if names is not None else ckpt.get("names"))
    state = ckpt[entry]
    if nc != old_nc:  # the output convs keep their fresh initialisation; everything else must fit exactly
        own, head = model.state_dict(), f"model.{len(model.model) - 1}.m."
        fresh = {k: v for k, v in own.items() if k.startswith(head) and k in state and state[k].shape != v.shape}
        state = {**state, **fresh}
        LOGGER.info(f"Transferred {len(own) - len(fresh)}/{len(own)} items from {path} ({old_nc} -> {nc} classes"
                    f"{', pruned architecture' if is_pruned_arch(arch) else ''})")
    load_weights(model, state, path, entry)
    model = model.to(device)
    if inference:
        model.eval()
        if fuse:
            model.fuse()
        if half:
            model.half()
    return model


def load_model(weights: str | Path, device: str | torch.device = "cpu", fuse: bool = False,
               use_ema: bool = True, half: bool = False) -> tuple[torch.nn.Module, dict]:
    """Resolve, load and build a model from a checkpoint (ours, pruned or official); returns (model in eval, ckpt).

    The architecture always comes from the checkpoint, so pruned models need no extra flags; see
    :func:`model_from_checkpoint`.
    """
    path = resolve_weights(weights)
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, path, "ema" if use_ema else "model", device=device, inference=True,
                                  fuse=fuse, half=half)
    model.ckpt_path = str(path)
    return model, ckpt
