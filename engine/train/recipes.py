"""Which training hooks a set of options asks for (sparsity training, distillation)."""

from __future__ import annotations

from engine.train.distill_hook import DistillHook
from engine.train.feature_distill import FeatureDistillHook
from engine.train.hooks import TrainHook
from engine.train.options import TrainOptions
from engine.train.sparsity_hook import SparsityHook

__all__ = ["hooks_for"]


def hooks_for(opt: TrainOptions) -> list[TrainHook]:
    """The hooks for ``opt``: a BN-sparsity hook with ``--bn_sparsity``, a distillation hook with ``--teacher``
    (``--distill`` output or feature)."""
    hooks: list[TrainHook] = []
    if opt.bn_sparsity:
        hooks.append(SparsityHook(opt.sparsity_rate, constant=opt.sparsity_constant, mode=opt.sparsity_mode,
                                  target=opt.sparsity_target, round_to=opt.sparsity_round,
                                  importance=opt.sparsity_importance))
    if opt.teacher and opt.distill == "feature":
        hooks.append(FeatureDistillHook(opt.teacher, weight=opt.kd_weight))
    elif opt.teacher:
        hooks.append(DistillHook(opt.teacher, weight=opt.kd_weight))
    return hooks
