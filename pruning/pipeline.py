"""The whole channel-pruning chain in one call: groups -> importances -> threshold and masks -> smaller model."""

from __future__ import annotations

from torch import nn

from pruning.graph import build_groups
from pruning.masks import compute_masks
from pruning.report import PruneReport
from pruning.surgery import prune_model

__all__ = ["slim_model"]


def slim_model(model: nn.Module, percent: float, mode: str = "normal", round_to: int = 1, min_channels: int = 1,
               fold_beta: bool = False, reduce: str = "mean", ch: int = 3,
               importance: str = "gamma") -> tuple[nn.Module, PruneReport]:
    """Prune ``percent`` of the candidate channels of ``model`` by BN |gamma| (``importance``: see :mod:`pruning.importance`); the input model is left as it was.

    Each step is a pure function of its inputs (see :mod:`pruning`): :func:`~pruning.graph.build_groups`,
    :func:`~pruning.masks.compute_masks` (which raises ValueError, with the safe figure, for a percent that would
    empty a layer), :func:`~pruning.surgery.prune_model`.

    Returns:
        ``(pruned model, PruneReport)``; ``report.to_dict()`` goes into the checkpoint's ``pruning`` entry.
    """
    groups = build_groups(model)
    plan = compute_masks(model, groups, percent, mode=mode, min_channels=min_channels, round_to=round_to,
                         reduce=reduce, importance=importance)
    return prune_model(model, plan, fold_beta=fold_beta, ch=ch)
