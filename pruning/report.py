"""What a pruning step did: one row per BatchNorm layer, totals, the threshold and the safe figures."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from torch import nn

from models.summary import count_params

from pruning.masks import ChannelMasks, candidate_groups

__all__ = ["LayerRow", "PruneReport", "build_report"]


@dataclass
class LayerRow:
    """One BatchNorm layer: channels before and after, and whether (and why not) it could be pruned."""

    path: str
    original: int
    kept: int
    prunable: bool
    reason: str = ""
    group: int = -1
    residual: bool = False


@dataclass
class PruneReport:
    """Per-layer rows and totals of one pruning step (JSON-ready through :meth:`to_dict`).

    ``channels_before``/``channels_removed`` count candidate group channels (those the threshold ranks);
    ``max_abs_diff`` is the largest output difference between the pruned model before folding and its exact
    reference, the masked model whose removed channels output 0; ``fold_diff`` (beta folding only) that of the
    folded model against the masked model that keeps act(beta), which it equals except at zero-padded borders.
    """

    rows: list[LayerRow]
    params_before: int
    params_after: int
    percent: float
    threshold: float
    safe_percent: float
    safe_threshold: float
    mode: str
    round_to: int
    fold_beta: bool
    channels_before: int
    channels_removed: int
    max_abs_diff: float = float("nan")
    notes: list[str] = field(default_factory=list)
    fold_diff: float = float("nan")

    def to_dict(self) -> dict:
        """Plain Python values (NaN becomes None) for JSON files and checkpoints."""
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    def table(self) -> str:
        """The per-layer table followed by the summary, for printing."""
        lines = [f"{'layer':<32}{'channels':>10}{'kept':>8}  {'prunable':<9}reason"]
        for r in self.rows:
            why = r.reason if not r.prunable else ("residual, pruned jointly" if r.residual else "")
            lines.append(f"{r.path:<32}{r.original:>10}{r.kept:>8}  {'yes' if r.prunable else 'no':<9}{why}")
        return "\n".join(lines + [self.summary()])

    def summary(self) -> str:
        """One paragraph: ratio, threshold, safe ratio, parameters."""
        ratio = self.params_after / max(self.params_before, 1)
        asked = round(self.percent * self.channels_before)
        if self.channels_removed != asked:
            why = f"rounding kept counts up to multiples of {self.round_to}" if self.round_to > 1 else "rounding"
            s0 = f"Asked {asked} of {self.channels_before} channels ({self.percent:g}); {why} keeps " \
                 f"{asked - self.channels_removed} of them. "
        else:
            s0 = ""
        s = s0 + (f"Pruned {self.channels_removed}/{self.channels_before} candidate channels (percent {self.percent:g}, "
             f"mode {self.mode}, score threshold {self.threshold:.4g}; safe percent {self.safe_percent:.4f} at "
             f"threshold {self.safe_threshold:.4g}). Parameters {self.params_before:,} -> {self.params_after:,} "
             f"({ratio:.1%}).")
        if not math.isnan(self.max_abs_diff):
            ok = "equal up to float rounding" if self.max_abs_diff < 1e-3 else "NOT EQUAL: please report this"
            s += (f"\nSurgery check: max |pruned - masked| raw output difference {self.max_abs_diff:.2g} ({ok}; the "
                  f"masked reference zeroes the removed channels{', checked before folding' if self.fold_beta else ''}).")
        if not math.isnan(self.fold_diff):
            s += (f"\nBeta folding: the removed channels' constant act(beta) moved into the next layers' biases; that "
                  f"equals keeping them except where 3x3 convs read zero padding at the image border, where the "
                  f"raw outputs (box terms in pixels) differ by up to {self.fold_diff:.3g} from the masked model that "
                  f"keeps them (--no-fold-beta drops the constants instead).")
        return s + "".join(f"\n  note: {n}" for n in self.notes)


def build_report(src: nn.Module, new: nn.Module, plan: ChannelMasks, fold_beta: bool = False,
                 notes: list[str] | None = None, max_abs_diff: float = float("nan"),
                 fold_diff: float = float("nan")) -> PruneReport:
    """Assemble the :class:`PruneReport` of pruning ``src`` into ``new`` with ``plan``."""
    cands = {g.id for g in candidate_groups(plan.groups, plan.mode)}
    modules = dict(src.named_modules())
    rows: dict[str, LayerRow] = {}
    for g in plan.groups:
        mask = plan.mask(g).tolist()
        for mem in g.bns:
            row = rows.get(mem.path)
            if row is None:
                n = modules[mem.path].num_features
                reason = g.reason or ("residual group, skipped in mode 'normal'" if g.id not in cands else "")
                row = rows[mem.path] = LayerRow(mem.path, n, n, g.id in cands, reason, g.id, g.residual)
            row.kept -= sum(1 for k in mem.index if not mask[k])
    n_before, n_after = count_params(src), count_params(new)
    total = sum(plan.groups[i].width for i in cands)
    removed = sum(int((~plan.mask(plan.groups[i])).sum()) for i in cands)
    return PruneReport(list(rows.values()), n_before, n_after, plan.percent, plan.threshold, plan.safe_percent,
                       plan.safe_threshold, plan.mode, plan.round_to, fold_beta, total, removed, max_abs_diff,
                       list(notes or []), fold_diff)
