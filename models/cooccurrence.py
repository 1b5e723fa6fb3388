"""Item-item co-occurrence: items bought or browsed together are related."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from models.base import (NO_CONTEXT, Context, Interaction, ItemItemRecommender, Recommender, Scored, ScoreBlock,
                         SparseBlock, top_k)
from models.interactions import Interactions
from models.neighbours import jaccard, top_neighbours


class SessionCooccurrence(Recommender):
    """Counts how often two items appear in one user's recent context.

    Similarity is the cosine of the co-occurrence counts,
    ``c(i, j) / sqrt(n(i) * n(j))``, so that best-sellers do not neighbour
    everything. A user's context items vote for their neighbours, the most
    recent item with weight 1 and each older one ``recency_decay`` times less.

    >>> cooc = SessionCooccurrence()
    >>> for basket in (["tea", "cups"], ["tea", "cups"], ["tea", "saucers"]):
    ...     for n, item in enumerate(basket):
    ...         cooc.learn_one(Interaction("u", item, ts=0.0, context=basket[:n]))
    >>> [item for item, _ in cooc.recommend("u", 2, Context(recent=["tea"]))]
    ['cups', 'saucers']
    >>> cooc.learn_one(Interaction("u", "jam", ts=0.0, context=["scones"]))  # scones never learned itself
    >>> cooc.recommend("u", 2, Context(recent=["scones"])), cooc.recommend("u", 2, Context(recent=["jam"]))
    ([], [])
    """

    name = "session-cooccurrence"

    def __init__(self, recency_decay: float = 0.8, max_context: int = 20, max_neighbours: int = 50,
                 refresh_growth: float = 1.0):
        self.recency_decay = recency_decay
        self.max_context = max_context
        self.max_neighbours = max_neighbours
        self.refresh_growth = refresh_growth
        self._pairs: dict[str, dict[str, float]] = defaultdict(dict)
        self._counts: dict[str, float] = defaultdict(float)
        # item -> (its count when ranked, its best neighbours); re-ranked once the
        # count has grown by ``refresh_growth``, so a hot item is not re-sorted per event.
        self._neighbour_cache: dict[str, tuple[float, list[tuple[str, float]]]] = {}

    def learn_one(self, x: Interaction) -> None:
        self._counts[x.item_id] += x.weight
        for other in set(x.context[-self.max_context :]):
            if other == x.item_id:
                continue
            row, back = self._pairs[x.item_id], self._pairs[other]
            row[other] = row.get(other, 0.0) + x.weight
            back[x.item_id] = back.get(x.item_id, 0.0) + x.weight

    def similarity(self, item_a: str, item_b: str) -> float:
        together = self._pairs.get(item_a, {}).get(item_b, 0.0)
        if together <= 0:
            return 0.0
        return together / math.sqrt(self._counts[item_a] * self._counts[item_b])

    def neighbours(self, item_id: str) -> list[tuple[str, float]]:
        """The item's ``max_neighbours`` most similar items, best first."""
        count = self._counts.get(item_id, 0.0)
        cached = self._neighbour_cache.get(item_id)
        if cached is not None and count <= cached[0] * (1 + self.refresh_growth):
            return cached[1]
        row = self._pairs.get(item_id)
        if not row or count <= 0:
            return []
        # An item met only as context (a customer's recent item from before a restart, or one only
        # removed from a cart) has no count of its own yet, hence no similarity.
        counts = self._counts
        sims = {other: c / math.sqrt(count * counts[other]) for other, c in row.items()
                if c > 0 and counts.get(other, 0.0) > 0}
        ranked = top_k(sims, self.max_neighbours)
        self._neighbour_cache[item_id] = (count, ranked)
        return ranked

    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        scores: dict[str, float] = defaultdict(float)
        vote = 1.0
        for item in reversed(context.recent[-self.max_context :]):
            for other, sim in self.neighbours(item):
                scores[other] += vote * sim
            vote *= self.recency_decay
        return top_k(scores, k, context.exclude)


class ItemCooccurrence(ItemItemRecommender):
    """Jaccard co-occurrence of items across customers (as in SAR): two items are
    similar when the same customers buy both. Each item keeps its ``neighbours``
    best; scored against the user's time-decayed purchase history. With
    ``include_self`` an item is also fully similar to itself, as in SAR, so what the
    customer bought before competes with its neighbours."""

    name = "cooccurrence"

    def __init__(self, history_half_life_days: float = 30.0, neighbours: int = 100, include_self: bool = True):
        self.history_half_life_days = history_half_life_days
        self.neighbours = neighbours
        self.include_self = include_self

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        history = self.history(user_rows)
        scores = history @ self.similarity
        return SparseBlock(scores + history if self.include_self else scores)

    def fit(self, data: Interactions) -> "ItemCooccurrence":
        self.data = data
        buyers = np.asarray(data.bought.sum(axis=0), dtype=np.float32).ravel()
        self.similarity = top_neighbours(data.bought.T.tocsr(), self.neighbours, jaccard(buyers))
        return self
