"""Prune to a budget: the smallest prune whose pruned model meets a target (GFLOPs, parameters), found by bisection.

The removal order of :func:`pruning.masks.compute_masks` is fixed by the scores, so a larger percent removes a superset
of channels and the cost falls (almost) monotonically with it; bisection over the number of removed channels then finds
the smallest prune at or under the target in about log2(candidates) probes, each a real surgery and count. Every
probe is kept, so a report can show how the search went.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["BudgetResult", "search_percent", "search_accuracy"]


@dataclass
class BudgetResult:
    """The chosen percent, its measured cost, and every probe ``{'percent': p, 'value': v}`` in the order made."""

    percent: float
    value: float
    probes: list[dict] = field(default_factory=list)


def _probe(measure: Callable[[float], float], candidates: int, probes: list[dict], k: int) -> float:
    """Measure the prune of ``k`` of ``candidates`` channels and log it in ``probes``."""
    p = k / candidates
    v = float(measure(p))
    probes.append({"percent": p, "value": v})
    return v


def search_percent(measure: Callable[[float], float], target: float, candidates: int, safe_percent: float,
                   what: str = "GFLOPs") -> BudgetResult:
    """The smallest percent (a multiple of ``1 / candidates``, at most ``safe_percent``) whose ``measure`` is <= target.

    Args:
        measure: the cost of the model pruned at a percent (e.g. its GFLOPs); expected to fall as percent grows.
        target: the budget.
        candidates: the number of candidate channels (the percent grid is ``k / candidates``).
        safe_percent: the largest percent that leaves every layer a channel.
        what: the cost's name, for messages.

    Raises:
        ValueError: the budget cannot be met even at the safe maximum (the message gives the nearest reachable cost),
            or ``target`` is not positive.
    """
    if not target > 0:
        raise ValueError(f"the target {what} must be > 0, got {target:g}")
    probes: list[dict] = []
    probe = functools.partial(_probe, measure, candidates, probes)
    v0 = probe(0)
    if v0 <= target:
        return BudgetResult(0.0, v0, probes)
    hi = math.floor(safe_percent * candidates + 1e-9)
    v_hi = probe(hi) if hi > 0 else v0
    if v_hi > target:
        raise ValueError(f"a budget of {target:g} {what} cannot be met: the largest safe prune (--percent "
                         f"{hi / candidates:.4f}) still has {v_hi:.4g} {what} (unpruned {v0:.4g}); that is the nearest "
                         f"reachable figure (train with more sparsity, or prune layers too, to go below it)")
    lo, best = 0, (hi, v_hi)  # measure(lo) > target >= measure(best[0])
    while best[0] - lo > 1:
        mid = (lo + best[0]) // 2
        v = probe(mid)
        if v <= target:
            best = (mid, v)
        else:
            lo = mid
    return BudgetResult(best[0] / candidates, best[1], probes)


def search_accuracy(measure: Callable[[float], float], floor: float, candidates: int, hi_percent: float,
                    resolution: float = 0.01) -> BudgetResult:
    """The largest percent in ``[0, hi_percent]`` whose ``measure`` (an accuracy, e.g. val mAP50-95 of the pruned and
    BN-recalibrated model) stays >= ``floor``, by bisection until the bracket is at most ``resolution`` wide: the
    result passes and the probe one step above it (``result + resolution`` or less) failed, unless ``hi_percent``
    itself passes.

    Raises:
        ValueError: ``resolution`` not in (0, 1).
    """
    if not 0 < resolution < 1:
        raise ValueError(f"resolution must be in (0, 1), got {resolution}")
    probes: list[dict] = []
    probe = functools.partial(_probe, measure, candidates, probes)
    hi = math.floor(hi_percent * candidates + 1e-9)
    v_hi = probe(hi) if hi > 0 else float("nan")
    if hi > 0 and v_hi >= floor:
        return BudgetResult(hi / candidates, v_hi, probes)
    step = max(1, math.floor(resolution * candidates))
    lo, v_lo = 0, float("nan")  # percent 0 is the unpruned model: it passes by definition
    while hi - lo > step:
        mid = (lo + hi) // 2
        v = probe(mid)
        if v >= floor:
            lo, v_lo = mid, v
        else:
            hi = mid
    return BudgetResult(lo / candidates, v_lo, probes)
