"""Popularity: streaming with recency weights, and batch over a recent window."""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np
import pandas as pd

from models.base import BatchRecommender, Interaction, Recommender, Scored, top_k
from models.interactions import Interactions

# Past this many half-lives all scores are rescaled, so floats never overflow.
_RESCALE_AFTER_HALF_LIVES = 64.0


class RecencyWeightedPopularity(Recommender):
    """Each interaction adds ``weight * 2 ** (age / half_life)`` to its item.

    Scores are kept relative to a reference time instead of decaying every
    item on every event, so ``learn_one`` is O(1).

    >>> pop = RecencyWeightedPopularity(half_life_seconds=3600)
    >>> pop.learn_one(Interaction("u1", "old", ts=0.0))
    >>> pop.learn_one(Interaction("u2", "new", ts=7200.0))
    >>> [item for item, _ in pop.recommend("u3", context=(), k=2)]
    ['new', 'old']
    >>> round(pop.score("old") / pop.score("new"), 2)  # two half-lives older
    0.25
    """

    name = "recency-popularity"

    def __init__(self, half_life_seconds: float = 7 * 86400.0):
        if half_life_seconds <= 0:
            raise ValueError("half_life_seconds must be > 0")
        self.half_life_seconds = half_life_seconds
        self._scores: dict[str, float] = {}
        self._reference_ts: float | None = None
        self._ranked: Scored | None = None

    def learn_one(self, x: Interaction) -> None:
        if x.weight == 0:
            return
        if self._reference_ts is None:
            self._reference_ts = x.ts
        exponent = (x.ts - self._reference_ts) / self.half_life_seconds
        if exponent > _RESCALE_AFTER_HALF_LIVES:
            self._rescale(x.ts)
            exponent = 0.0
        self._scores[x.item_id] = self._scores.get(x.item_id, 0.0) + x.weight * 2.0**exponent
        self._ranked = None

    def score(self, item_id: str) -> float:
        return self._scores.get(item_id, 0.0)

    def recommend(
        self, user_id: str, context: Sequence[str], k: int, exclude: Collection[str] = (), *,
        cart: Sequence[str] = (), segment: str = "",
    ) -> Scored:
        # Most calls come between two learns with the same ranking: rank once, filter often.
        if self._ranked is None:
            self._ranked = top_k(self._scores, len(self._scores))
        out: Scored = []
        for item, score in self._ranked:
            if item not in exclude:
                out.append((item, score))
                if len(out) == k:
                    break
        return out

    def _rescale(self, new_reference_ts: float) -> None:
        factor = 2.0 ** (-(new_reference_ts - self._reference_ts) / self.half_life_seconds)
        self._scores = {item: s * factor for item, s in self._scores.items() if s * factor > 1e-300}
        self._reference_ts = new_reference_ts

    def __len__(self) -> int:
        return len(self._scores)



class RecentPopularity(BatchRecommender):
    """Distinct buyers per item over the last ``window_days`` of the history, overall or
    within the user's segment: given as ``segments`` (user_id -> name), or learned at
    fit time by a ``segmenter`` (``fit(data).labels``)."""

    name = "popularity"

    def __init__(self, window_days: float = 30.0, segmenter=None, segments: dict[str, str] | None = None):
        self.window_days = window_days
        self.segmenter = segmenter
        self.segments = segments or {}
        if segmenter is not None or segments:
            self.name = "segment-popularity"

    def fit(self, data: Interactions) -> "RecentPopularity":
        self.data = data
        if self.segmenter is not None:
            self.segments = self.segmenter.fit(data).labels.to_dict()
        recent = data.events[data.events["timestamp"] >= data.end - pd.Timedelta(days=self.window_days)]
        self.overall = self._counts(recent)
        self.by_segment: dict[str, np.ndarray] = {}
        if self.segments:
            labels = recent["user_id"].map(self.segments)
            for segment, part in recent.groupby(labels):
                self.by_segment[segment] = self._counts(part)
        return self

    def _counts(self, events: pd.DataFrame) -> np.ndarray:
        buyers = events.groupby("item_id")["user_id"].nunique()
        counts = np.zeros(self.data.n_items)
        counts[buyers.index.map(self.data.item_index).to_numpy()] = buyers.to_numpy()
        return counts / max(counts.max(), 1.0)

    def score(self, user_rows) -> np.ndarray:
        if not self.by_segment:
            return np.broadcast_to(self.overall, (len(user_rows), self.data.n_items)).copy()
        users = self.data.user_ids[user_rows]
        return np.vstack([self.by_segment.get(self.segments.get(u), self.overall) for u in users])

    def top(self, k: int, segment: str | None = None) -> list[tuple[str, float]]:
        counts = self.by_segment.get(segment, self.overall) if segment else self.overall
        best = np.argsort(-counts, kind="stable")[:k]
        return [(self.data.item_ids[j], float(counts[j])) for j in best if counts[j] > 0]
