"""Popularity: streaming with recency weights, and batch over a recent window."""

from __future__ import annotations

import numpy as np
import pandas as pd

import scipy.sparse as sp

from models.base import (NO_CONTEXT, BatchRecommender, Context, Interaction, Recommender, Scored, ScoreBlock, TopN,
                         pad_top_n, top_k)
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
    >>> [item for item, _ in pop.recommend("u3", 2)]
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

    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        exclude = context.exclude
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
    """Distinct buyers per item over the most recent ``recent_share`` of the history's time
    span, overall or within the customer's segment (``segments``: user_id -> name)."""

    name = "popularity"
    capabilities = frozenset({"discovers"})

    def __init__(self, recent_share: float = 0.1, segments: dict[str, str] | None = None):
        if not 0 < recent_share <= 1:
            raise ValueError("recent_share must be in (0, 1]")
        self.recent_share = recent_share
        self.segments = segments or {}

    @classmethod
    def from_scores(cls, recent_share: float, overall: np.ndarray) -> "RecentPopularity":
        """A model whose items' scores (``popularity_scores``) were counted elsewhere, by a
        distributed engine; it serves customers once given their data (``serving``)."""
        model = cls(recent_share)
        model.overall, model.by_segment, model._vectors = overall, {}, None
        return model

    def fit(self, data: Interactions) -> "RecentPopularity":
        # Counted on customer-item pairs, not order lines: a customer bought the item in the
        # recent stretch exactly when their last purchase of it falls inside it.
        self.data = data
        self._vectors = None
        pairs = data.pairs
        cols = pairs["col"].to_numpy()
        recent = np.ones(len(cols), dtype=bool)
        if len(pairs):
            start = data.events["timestamp"].min()
            since = data.end - (data.end - start) * self.recent_share
            recent = (pairs["last"] >= since).to_numpy()
        self._alltime = np.asarray(data.bought.sum(axis=0)).ravel()
        self.overall = self._counts(cols[recent])
        self.by_segment: dict[str, np.ndarray] = {}
        if self.segments:
            labels = pairs["user_id"].map(self.segments).to_numpy()
            self._count_by_segment(cols, labels, recent)
            # A segment with no recent buyers (lapsing customers) ranks what its customers bought over all time.
            quiet = set(self.segments.values()) - set(self.by_segment)
            if quiet:
                self._count_by_segment(cols, labels, pd.Series(labels).isin(quiet).to_numpy())
        return self

    def _count_by_segment(self, cols: np.ndarray, labels: np.ndarray, counted: np.ndarray) -> None:
        for segment, part in pd.Series(cols[counted]).groupby(labels[counted]):
            self.by_segment[segment] = self._counts(part.to_numpy())

    def _counts(self, cols: np.ndarray) -> np.ndarray:
        """Scores from the item columns of the customer-item pairs counted (one per buyer)."""
        return popularity_scores(np.bincount(cols, minlength=self.data.n_items), self._alltime, self.data.n_users)

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        if self._vectors is None:  # ranked once: every block of customers shares the same few vectors
            names = sorted(self.by_segment)
            vectors = np.vstack([self.overall, *(self.by_segment[name] for name in names)])
            self._vectors = (vectors, np.argsort(-vectors, axis=1, kind="stable"),
                             {name: n + 1 for n, name in enumerate(names)})
        vectors, order, group = self._vectors
        users = self.data.user_ids[user_rows]
        return RankedVectorBlock(vectors, np.array([group.get(self.segments.get(u), 0) for u in users], dtype=np.int64),
                                 order)

    def top(self, k: int, segment: str | None = None) -> list[tuple[str, float]]:
        return best_items(self.by_segment.get(segment, self.overall) if segment else self.overall,
                          self.data.item_ids, k)


def popularity_scores(recent_buyers: np.ndarray, alltime_buyers: np.ndarray, n_users: int) -> np.ndarray:
    """Items' scores from their recent buyers, all-time buyers breaking ties among items equally
    popular of late; the best item scores 1."""
    counts = recent_buyers.astype(np.float64) + 1e-6 * alltime_buyers / max(n_users, 1)
    return counts / max(counts.max(initial=0.0), 1e-12)


def best_items(scores: np.ndarray, item_ids: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The ``k`` best-scored items with a positive score (equal scores: the earlier item first)."""
    best = np.argsort(-scores, kind="stable")[:k]
    return [(item_ids[j], float(scores[j])) for j in best if scores[j] > 0]


class TrendingPopularity(RecentPopularity):
    """Distinct buyers over a short recent stretch of the history: what is selling now, beside
    the longer view of ``RecentPopularity``. Both feed the hybrid, whose ranker learns how much
    each period's best sellers say about the next."""

    name = "trending"

    def __init__(self, recent_share: float = 0.05):
        super().__init__(recent_share)


class RankedVectorBlock(ScoreBlock):
    """Users that share one score vector per group (popular items overall or per segment)."""

    def __init__(self, vectors: np.ndarray, group_of_row: np.ndarray, order: np.ndarray):
        self.vectors = vectors
        self.group_of_row = group_of_row
        self.order = order  # each vector's columns, best first

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        extra = int(np.diff(exclude.indptr).max()) if exclude is not None and exclude.nnz else 0
        take = min(n + extra, self.vectors.shape[1])
        best = self.order[:, :take]
        items = best[self.group_of_row]
        scores = self.vectors[self.group_of_row[:, None], items].astype(np.float32)
        usable = scores > 0
        if extra:
            rows = np.repeat(np.arange(len(items)), take)
            usable &= (np.asarray(exclude[rows, items.ravel()]).reshape(items.shape) == 0)
        order = np.argsort(~usable, axis=1, kind="stable")[:, :n]
        keep = np.take_along_axis(usable, order, axis=1)
        items = np.where(keep, np.take_along_axis(items, order, axis=1), -1)
        scores = np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32)
        return pad_top_n(TopN(items.astype(np.int64), scores), n)

    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.vectors[self.group_of_row[positions], cols].astype(np.float32)
