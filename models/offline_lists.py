"""Serving the trainer's output in the stream: precomputed lists plus neighbours of the session."""

from __future__ import annotations

from collections import defaultdict
from typing import Collection, Sequence

from models.base import Interaction, Recommender, Scored, top_k


class OfflineListsWithSession(Recommender):
    """The user's offline list (rank-weighted), plus offline neighbours of the items in
    the live context, plus popular items to fill the list for unknown users.

    ``session_weight`` (0.3) was chosen on a validation window before the test window
    (``bench/tune_reranking.py``).

    >>> model = OfflineListsWithSession({"u1": [("a", .9), ("b", .5)]}, {"x": [("c", 1.0)]}, [("p", 1.0)], "v1")
    >>> [item for item, _ in model.recommend("u1", context=[], k=3)]
    ['a', 'b', 'p']
    >>> [item for item, _ in model.recommend("new", context=["x"], k=2)]
    ['c', 'p']
    """

    def __init__(self, user_lists: dict[str, Scored], similar_items: dict[str, Scored], popular: Scored,
                 version: str, session_weight: float = 0.3, recency_decay: float = 0.7, context_items: int = 5,
                 segment_popular: dict[str, Scored] | None = None):
        self.user_lists = user_lists
        self.similar_items = similar_items
        self.popular = popular
        self.segment_popular = segment_popular or {}
        self.name = version
        self.session_weight = session_weight
        self.recency_decay = recency_decay
        self.context_items = context_items

    def learn_one(self, x: Interaction) -> None:
        """Offline lists change only with a new model version."""

    def static_list(self, user_id: str, k: int) -> Scored:
        """The offline list alone, as the trainer published it (popular for unknown users)."""
        return list(self.user_lists.get(user_id, self.popular))[:k]

    def recommend(self, user_id: str, context: Sequence[str], k: int, exclude: Collection[str] = (),
                  segment: str = "") -> Scored:
        """Offline list + session neighbours; users without an offline list fall back to the
        popular items of ``segment`` when given, else to overall popular items."""
        scores: dict[str, float] = defaultdict(float)
        for rank, (item, _) in enumerate(self.user_lists.get(user_id, ())):
            scores[item] += 1.0 / (rank + 1)
        vote = 1.0
        for item in reversed(context[-self.context_items:]):
            for other, similarity in self.similar_items.get(item, ()):
                scores[other] += self.session_weight * vote * similarity
            vote *= self.recency_decay
        # Popular items rank below everything personal and fill the list.
        floor = 1e-3
        fallback = self.popular
        if segment and user_id not in self.user_lists:
            fallback = self.segment_popular.get(segment, self.popular)
        for rank, (item, _) in enumerate(fallback):
            if item not in scores:
                scores[item] = floor / (rank + 1)
        return top_k(scores, k, exclude)
