"""The Pareto front of accuracy against cost: the models no other model beats on both."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["pareto_front"]


def pareto_front(cost: Sequence[float | None], score: Sequence[float | None]) -> list[int]:
    """Indices of the points on the Pareto front, in order of increasing cost.

    A point is on the front when no other point has a cost at most as high and a score at least as high, one of them
    strictly better. Points with a missing (None or NaN) cost or score take no part. Of exact duplicates, the first
    is kept.

    Args:
        cost: lower is better (latency, parameters).
        score: higher is better (mAP).
    """
    if len(cost) != len(score):
        raise ValueError(f"pareto_front: {len(cost)} costs but {len(score)} scores")
    valid = [i for i, (c, s) in enumerate(zip(cost, score))
             if c is not None and s is not None and not math.isnan(c) and not math.isnan(s)]
    # Cheapest first, and among equal costs the best score first: then a point is on the front exactly when it beats
    # the best score seen so far.
    order = sorted(valid, key=lambda i: (cost[i], -score[i], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front
