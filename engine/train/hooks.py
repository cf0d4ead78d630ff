"""Hooks that extend the training loop without copying it (sparsity training, distillation, ...).

Hooks are handed to the trainer (see :func:`engine.train.trainer.build_trainer`) and read the run through a
:class:`StepInfo`, a small record the trainer fills where it calls them, never through the trainer itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from engine.train.log import TrainLogger
    from engine.train.options import TrainOptions

__all__ = ["TrainHook", "StepInfo", "settle_options"]


@dataclass(frozen=True)
class StepInfo:
    """Where the run stands when a hook is called, and what a hook may use.

    Attributes:
        model: the model being trained (DDP-wrapped in multi-GPU runs: ``utils.torch_utils.unwrap`` it).
        optimizer: its optimizer (``before_step`` runs just before ``optimizer.step()``).
        device: this process's device.
        main: True in the process that validates, logs and saves (rank 0, or the only one).
        opt: a copy of the run's options; ``before_train`` returns the options a hook settles instead of writing them.
        hyp: the hyperparameters scaled for this run (``lr0``, ``lrf``, ``momentum``, ``warmup_momentum``, ...).
        imgsz: the training image size.
        epoch: the current epoch (the first to run in ``before_train``, the last that ran in ``after_train``).
        epochs: the planned number of epochs.
        start_epoch: the first epoch of this process's run (> 0 when resumed).
        nb: batches per epoch.
        nw: warmup iterations (-1: no warmup).
        ni: the iteration counted from the run's start (-1 outside an iteration).
        accumulate: batches accumulated per optimizer step at ``ni``.
        save_dir: the run's folder.
        logger: the results.csv/TensorBoard logger (None outside the main process).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    main: bool
    opt: TrainOptions
    hyp: dict
    imgsz: int
    epoch: int
    epochs: int
    start_epoch: int
    nb: int
    nw: int
    ni: int
    accumulate: int
    save_dir: Path
    logger: TrainLogger | None


class TrainHook:
    """Base class: override what you need. Every method receives a :class:`StepInfo`."""

    def before_train(self, step: StepInfo) -> dict[str, Any]:
        """After the model, data and optimizer exist; before the first epoch.

        Returns:
            Options this hook settled (e.g. the S that ``--sparsity_rate auto`` chose), which the trainer writes into
            the run's options so that checkpoints and ``--resume`` carry them; ``{}`` for none.
        """
        return {}

    def extra_loss(self, step: StepInfo, imgs: torch.Tensor, preds: list[torch.Tensor],
                   targets: torch.Tensor) -> torch.Tensor | None:
        """A loss term added to the detection loss for this batch (scaled like it: per-image mean x batch size)."""
        return None

    def before_step(self, step: StepInfo) -> None:
        """Between ``backward()`` (grads unscaled) and ``optimizer.step()``: gradient regularisers go here."""

    def after_epoch(self, step: StepInfo) -> dict[str, float]:
        """After validation of ``step.epoch`` (rank 0 only); returns extra values for results.csv and TensorBoard."""
        return {}

    def after_train(self, step: StepInfo) -> None:
        """After the last epoch and the final validation (rank 0 only)."""


def settle_options(opt: TrainOptions, settled: dict[str, Any], hook: TrainHook) -> None:
    """Write the options ``hook`` settled in ``before_train`` into the run's options ``opt`` (saved in checkpoints).

    Raises:
        ValueError: ``settled`` names something that is not an option.
    """
    unknown = sorted(set(settled) - {f.name for f in fields(opt)})
    if unknown:
        raise ValueError(f"{type(hook).__name__}.before_train returned unknown options: {', '.join(unknown)}")
    for k, v in settled.items():
        setattr(opt, k, v)
