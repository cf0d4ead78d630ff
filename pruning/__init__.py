"""Network slimming: channel groups from the traced graph, BN-gamma importance, one global threshold, exact surgery.

The chain (each step pure, the input model never mutated)::

    groups = build_groups(model)                             # coupled channels, prunable or not (with reasons)
    plan = compute_masks(model, groups, percent=0.3)          # global |gamma| threshold -> keep-mask per group
    pruned, report = prune_model(model, plan)                 # rebuilt smaller model + per-layer report

or ``slim_model(model, 0.3)``. Sparsity training uses :class:`BNSparsity` (a hook between backward and step);
:func:`prune_layers` removes whole residual Bottlenecks.
"""

from pruning.graph import ChannelGroup, Member, build_groups
from pruning.importance import bn_importance
from pruning.layers import LayerPruneReport, explicit_arch, prune_layers
from pruning.masks import MODES, ChannelMasks, candidate_groups, compute_masks, lowest_channels, safe_max_percent
from pruning.pipeline import slim_model
from pruning.report import LayerRow, PruneReport
from pruning.sparsity import BNSparsity, gamma_stats, plot_gamma_hist, prunable_bn_positions
from pruning.surgery import masked_model, output_difference, prune_model

__all__ = ["ChannelGroup", "Member", "build_groups", "bn_importance", "MODES", "ChannelMasks", "candidate_groups",
           "compute_masks", "lowest_channels", "safe_max_percent", "masked_model", "prune_model", "output_difference", "PruneReport",
           "LayerRow", "BNSparsity", "gamma_stats", "plot_gamma_hist", "prunable_bn_positions", "prune_layers",
           "LayerPruneReport", "explicit_arch", "slim_model"]
