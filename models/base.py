"""The two contracts every recommender in the product follows.

Streaming models, like River's estimators, learn from one interaction at a
time (``learn_one``) and answer for one user at a time (``recommend``).
Batch models, like Surprise's algorithms, ``fit`` on a whole history and
``score`` users against every item. Ids are strings, scores are floats.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from operator import itemgetter
from typing import Collection, NamedTuple, Sequence

import numpy as np


class Interaction(NamedTuple):
    """One user touching one item.

    ``context`` holds the items the user touched just before, most recent last;
    ``weight`` says how strong a signal the action is (a view < a purchase).
    """

    user_id: str
    item_id: str
    ts: float
    weight: float = 1.0
    context: Sequence[str] = ()


Scored = list[tuple[str, float]]


class Recommender(ABC):
    #: Names the model in every list it produces (``model_version`` in Redis).
    name: str = "recommender"

    @abstractmethod
    def learn_one(self, x: Interaction) -> None:
        """Update the model with one interaction."""

    def learn_item(self, item_id: str, category: str | None = None, price: float | None = None) -> None:
        """Learn a catalog record (models that use item traits override this)."""

    @abstractmethod
    def recommend(
        self, user_id: str, context: Sequence[str], k: int, exclude: Collection[str] = (), *,
        cart: Sequence[str] = (), segment: str = "",
    ) -> Scored:
        """Return up to ``k`` (item_id, score) pairs, best first, none of them in ``exclude``.

        ``context`` is the user's recent items, most recent last; ``cart`` what is in
        their cart now; ``segment`` their customer segment, when known.
        """


def top_k(scores: dict[str, float], k: int, exclude: Collection[str] = ()) -> Scored:
    """The ``k`` best-scored items not in ``exclude``; ties keep insertion order.

    A full sort (in C) beats a Python heap for the few hundred candidates a list draws on;
    for a large pool, the heap."""
    candidates = scores.items() if not exclude else [(i, s) for i, s in scores.items() if i not in exclude]
    if len(scores) > 50 * k:
        return heapq.nlargest(k, candidates, key=itemgetter(1))
    return sorted(candidates, key=itemgetter(1), reverse=True)[:k]


class BatchRecommender(ABC):
    """Offline models, in the manner of Surprise's ``fit`` / ``estimate``:
    ``fit`` on a whole :class:`~models.interactions.Interactions`, then
    ``score`` a block of users against every item at once."""

    name: str = "batch-recommender"

    @abstractmethod
    def fit(self, data) -> "BatchRecommender":
        """Learn from ``data`` (an ``Interactions``); return self."""

    @abstractmethod
    def score(self, user_rows) -> np.ndarray:
        """Scores of shape (len(user_rows), n_items); higher is better. Rows index ``data.user_ids``."""

    def recommend(self, user_id: str, k: int, exclude: Collection[str] = ()) -> Scored:
        data = self.data
        if user_id not in data.user_index:
            return []
        scores = self.score(np.array([data.user_index[user_id]]))[0]
        return top_k({data.item_ids[i]: float(scores[i]) for i in np.flatnonzero(scores > 0)}, k, exclude)


class ItemItemRecommender(BatchRecommender):
    """Models defined by an item-item similarity: a user's score for an item is the
    similarity of that item to the user's history, recent purchases counting more."""

    history_half_life_days: float = 30.0
    similarity: np.ndarray

    def score(self, user_rows) -> np.ndarray:
        history = self.data.decayed(self.history_half_life_days)[user_rows]
        return np.asarray(history @ self.similarity)

    def similar_items(self, item_id: str, k: int) -> Scored:
        """The ``k`` items most similar to ``item_id`` (empty for an unknown item)."""
        col = self.data.item_index.get(item_id)
        if col is None:
            return []
        row = self.similarity[col]
        best = np.argsort(-row, kind="stable")[: k + 1]
        return [(self.data.item_ids[j], float(row[j])) for j in best if j != col and row[j] > 0][:k]
