"""Optimizer, learning-rate schedule, warmup and early stopping for YOLOv5-style training."""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "build_optimizer", "build_lr_lambda", "warmup_step", "EarlyStopping"]

LOGGER = logging.getLogger(__name__)
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSProp")
BIAS_GROUP = 0  # YOLOv5's order, so results.csv's x/lr0 is the bias lr in both: biases, other weights, norm weights


def _is_norm(module: nn.Module) -> bool:
    """Normalisation layers (BatchNorm*, LayerNorm, GroupNorm, InstanceNorm, ...), found by class name."""
    return any("Norm" in cls.__name__ for cls in type(module).__mro__ if cls is not nn.Module)


def build_optimizer(model: nn.Module, name: str = "SGD", lr: float = 0.001, momentum: float = 0.9,
                    decay: float = 1e-5) -> torch.optim.Optimizer:
    """Build an optimizer with three parameter groups.

    YOLOv5's groups and order: group 0 holds all biases (no decay; the warmup starts their lr high), group 1 all
    other weights (``decay``), group 2 normalisation-layer weights (no weight decay: it would shrink the BN gammas
    that network slimming reads).

    Args:
        model: model whose parameters are optimised (each parameter is added once even when shared).
        name: one of ``OPTIMIZERS`` (case-insensitive).
        lr: initial learning rate.
        momentum: SGD/RMSProp momentum, Adam/AdamW beta1.
        decay: weight decay of group 1.

    Returns:
        The optimizer.
    """
    choices = {c.lower(): c for c in OPTIMIZERS}
    canonical = choices.get(str(name).lower())
    if canonical is None:
        raise ValueError(f"optimizer '{name}' is not supported; choose one of {list(OPTIMIZERS)}")

    groups: tuple[list, list, list] = ([], [], [])
    seen: set[int] = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if pname == "bias":
                groups[0].append(p)
            elif pname == "weight" and _is_norm(module):
                groups[2].append(p)
            else:
                groups[1].append(p)
    param_groups = [
        {"params": groups[0], "weight_decay": 0.0},
        {"params": groups[1], "weight_decay": decay},
        {"params": groups[2], "weight_decay": 0.0},
    ]

    if canonical == "SGD":
        optimizer = torch.optim.SGD(param_groups, lr=lr, momentum=momentum, nesterov=True)
    elif canonical == "Adam":
        optimizer = torch.optim.Adam(param_groups, lr=lr, betas=(momentum, 0.999))
    elif canonical == "AdamW":
        optimizer = torch.optim.AdamW(param_groups, lr=lr, betas=(momentum, 0.999))
    else:
        optimizer = torch.optim.RMSprop(param_groups, lr=lr, momentum=momentum)
    LOGGER.info(f"optimizer: {canonical}(lr={lr}) with parameter groups {len(groups[2])} weight(decay=0.0), "
                f"{len(groups[1])} weight(decay={decay}), {len(groups[0])} bias(decay=0.0)")
    return optimizer


def _linear(x: float, epochs: int, lrf: float) -> float:
    return (1.0 - x / epochs) * (1.0 - lrf) + lrf


def _one_cycle(x: float, epochs: int, lrf: float) -> float:
    return ((1.0 - math.cos(x * math.pi / epochs)) / 2.0) * (lrf - 1.0) + 1.0


def build_lr_lambda(epochs: int, lrf: float, cos: bool = False) -> Callable[[float], float]:
    """LR multiplier per epoch for ``LambdaLR``: 1 at epoch 0 down to ``lrf`` at ``epochs``, linear or cosine.

    The result is a picklable partial, so schedulers built from it can be saved and copied.
    """
    if epochs <= 0:
        raise ValueError(f"build_lr_lambda: epochs must be positive, got {epochs}")
    return functools.partial(_one_cycle if cos else _linear, epochs=epochs, lrf=lrf)


def warmup_step(optimizer: torch.optim.Optimizer, ni: int, nw: int, epoch: int, lf: Callable[[float], float],
                hyp: dict) -> bool:
    """Apply warmup for integrated iteration ``ni`` of ``nw`` warmup iterations; no-op once ``ni > nw``.

    The bias group's lr falls from ``hyp['warmup_bias_lr']`` and the other groups' rise from 0, all to
    ``initial_lr * lf(epoch)``; momentum (where the optimizer has one) rises from ``hyp['warmup_momentum']`` to
    ``hyp['momentum']``. ``initial_lr`` is set by the LR scheduler, so build the scheduler first.

    Returns:
        True when warmup values were applied. As in YOLOv5, iteration ``nw`` itself is the last: it sets the final
        values, so the momentum after warmup is ``hyp['momentum']`` exactly.
    """
    if ni > nw:
        return False
    xi = [0, nw]
    scale = lf(epoch)
    for j, group in enumerate(optimizer.param_groups):
        if "initial_lr" not in group:
            raise KeyError("warmup_step: parameter group has no 'initial_lr'; create the LR scheduler "
                           "(torch.optim.lr_scheduler.LambdaLR) before warming up")
        start = float(hyp["warmup_bias_lr"]) if j == BIAS_GROUP else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * scale]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]]))
    return True


class EarlyStopping:
    """Stop when fitness has not improved for ``patience`` epochs (``patience <= 0`` never stops)."""

    def __init__(self, patience: int = 30):
        self.patience = patience if patience and patience > 0 else math.inf
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.possible_stop = False  # True one epoch before a stop, so the trainer may save a last checkpoint

    def __call__(self, epoch: int, fitness: float) -> bool:
        """Record ``fitness`` of ``epoch``; return True when training should stop."""
        if fitness >= self.best_fitness:  # >= so that an early plateau at 0 fitness counts as progress
            self.best_epoch = epoch
            self.best_fitness = fitness
        waited = epoch - self.best_epoch
        self.possible_stop = waited >= self.patience - 1
        stop = waited >= self.patience
        if stop:
            LOGGER.info(f"EarlyStopping: no improvement in the last {self.patience} epochs (best fitness "
                        f"{self.best_fitness:.5f} at epoch {self.best_epoch}, saved as best.pt). Training stops; "
                        "raise the limit with --patience N, or disable it with --patience 0.")
        return stop
