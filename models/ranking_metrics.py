"""Top-k ranking metrics with binary relevance.

>>> ranked, relevant = ["a", "x", "b"], {"a", "b", "c"}
>>> precision_at_k(ranked, relevant, 3), recall_at_k(ranked, relevant, 3)
(0.6666666666666666, 0.6666666666666666)
>>> round(average_precision_at_k(ranked, relevant, 3), 4)  # (1/1 + 2/3) / min(3, 3)
0.5556
"""

from __future__ import annotations

import math
from typing import Collection, Sequence


def precision_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    return sum(item in relevant for item in ranked[:k]) / k


def recall_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    if not relevant:
        return 0.0
    return sum(item in relevant for item in ranked[:k]) / len(relevant)


def average_precision_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    """Sum of precision at each hit, divided by min(|relevant|, k)."""
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for position, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / position
    return total / min(len(relevant), k)


def ndcg_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(position + 1) for position, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(len(relevant), k) + 1))
    return dcg / ideal
