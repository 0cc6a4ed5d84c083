"""Pareto fronts for 'higher accuracy, lower cost' trade-offs."""
from __future__ import annotations

from typing import Sequence


def pareto_mask(costs: Sequence[float], accuracies: Sequence[float]) -> list[bool]:
    """True for points no other point beats on both cost (lower) and accuracy (higher)."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -accuracies[i]))
    mask, best = [False] * len(costs), float("-inf")
    for i in order:
        if costs[i] is None or accuracies[i] is None:
            continue
        if accuracies[i] > best:
            mask[i], best = True, accuracies[i]
    return mask
