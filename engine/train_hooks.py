"""Hooks that extend the training loop without copying it (sparsity training, distillation, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from engine.trainer import Trainer

__all__ = ["TrainHook"]


class TrainHook:
    """Base class: override what you need. Every method receives the trainer, whose state it may read."""

    def before_train(self, trainer: Trainer) -> None:
        """After the model, data and optimizer exist; before the first epoch."""

    def extra_loss(self, trainer: Trainer, imgs: torch.Tensor, preds: list[torch.Tensor],
                   targets: torch.Tensor) -> torch.Tensor | None:
        """A loss term added to the detection loss for this batch (scaled like it: per-image mean x batch size)."""
        return None

    def before_step(self, trainer: Trainer) -> None:
        """Between ``backward()`` (grads unscaled) and ``optimizer.step()``: gradient regularisers go here."""

    def after_epoch(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        """After validation (rank 0 only); returns extra values for results.csv and TensorBoard."""
        return {}

    def after_train(self, trainer: Trainer) -> None:
        """After the last epoch and the final validation (rank 0 only)."""
