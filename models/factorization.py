"""Implicit-feedback matrix factorisation (``implicit``'s ALS, CPU build)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.topk import topk
from threadpoolctl import threadpool_limits

from models.base import BatchRecommender, ScoreBlock, TopN, openmp_threads, pad_top_n
from models.interactions import Interactions


FIRST_ITEMS = 8192  # items scored first for every user, the longest vectors


class FactorBlock(ScoreBlock):
    """Scores as user factors . item factors (+ item bias), never materialised for all items."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray | None = None,
                 first_items: int = FIRST_ITEMS):
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.item_bias = item_bias
        self.first_items = first_items

    def _with_bias(self) -> tuple[np.ndarray, np.ndarray]:
        if self.item_bias is None:
            return self.user_factors, self.item_factors
        ones = np.ones((len(self.user_factors), 1), dtype=np.float32)
        return (np.hstack([self.user_factors, ones]),
                np.hstack([self.item_factors, self.item_bias[:, None].astype(np.float32)]))

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        """Each user's ``n`` best items, scoring the items a block at a time, longest vectors
        first: a user is done once their n-th best score beats |user| x |longest vector left|,
        which no item left can exceed (Cauchy-Schwarz). The same lists as scoring every item (but
        for the order of equal scores), at a fraction of the cost where a few items carry most of
        the weight (at 100k items, most customers' best 100 lie among the 12% longest vectors)."""
        users, items = self._with_bias()
        take = min(n, items.shape[0])
        lengths = np.linalg.norm(items, axis=1)
        order = np.argsort(-lengths, kind="stable")
        ranked, norms = np.ascontiguousarray(items[order]), lengths[order]
        user_norms = np.linalg.norm(users, axis=1)
        excluded = exclude.astype(np.float32).tocsr()[:, order] if exclude is not None else None
        best = TopN(np.full((len(users), take), -1, dtype=np.int64), np.full((len(users), take), -np.inf, np.float32))
        pending, start, size = np.arange(len(users)), 0, max(self.first_items, 4 * take)
        while len(pending) and start < len(ranked) and take:
            stop = min(start + size, len(ranked))
            found = _block_top_n(ranked[start:stop], users[pending], min(take, stop - start),
                                 excluded[pending][:, start:stop] if excluded is not None else None)
            _merge(best, pending, TopN(np.where(found.items >= 0, found.items + start, -1), found.scores))
            start, size = stop, 2 * size
            if start < len(ranked):
                # A margin for float rounding: an item left must not outscore the bound by a hair.
                left_max = user_norms[pending] * norms[start] * (1 + 1e-4)
                pending = pending[best.scores[pending, -1] < left_max]
        items_found = np.where(best.items >= 0, order[np.maximum(best.items, 0)], -1)
        return pad_top_n(self._rescored(items_found), n)

    def _rescored(self, items: np.ndarray) -> TopN:
        """Each user's ``items`` (-1: none) with their scores computed pair by pair (``at``), best
        first. The matrix products that found them round differently with how many users are
        scored together (in the 7th digit), and the hybrid's trees turn on such digits: a
        customer's scores must not depend on who was scored beside them (the export scores
        customers a chunk at a time, in several processes). Only an item within that rounding of
        a user's n-th best could still come or go."""
        rows, slots = np.nonzero(items >= 0)
        scores = np.full(items.shape, -np.inf, dtype=np.float32)
        scores[rows, slots] = self.at(rows, items[rows, slots])
        order = np.argsort(-scores, axis=1, kind="stable")
        return TopN(np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1))

    def at(self, positions: np.ndarray, cols: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        users, items = self._with_bias()
        out = np.empty(len(positions), dtype=np.float32)
        # In chunks: the gathered factor rows of millions of pairs would take gigabytes.
        for start in range(0, len(positions), chunk):
            part = slice(start, start + chunk)
            out[part] = np.einsum("ij,ij->i", users[positions[part]], items[cols[part]])
        return out


def _block_top_n(items: np.ndarray, users: np.ndarray, take: int, exclude: sp.csr_matrix | None) -> TopN:
    """The best ``take`` of ``items`` for each of ``users`` (positions in ``items``; -1 past the end)."""
    # implicit starts one thread per core on every call unless told: inside the trainer's
    # worker threads, that would be two per core.
    ids, scores = topk(items, users, take, filter_query_items=exclude, num_threads=openmp_threads())
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    valid = (ids >= 0) & np.isfinite(scores) & (scores > -1e30)
    return TopN(np.where(valid, ids, -1), np.where(valid, scores, -np.inf).astype(np.float32))


def _merge(best: TopN, rows: np.ndarray, found: TopN) -> None:
    """``best`` at ``rows`` becomes the best of itself and ``found`` (one row each), best first."""
    items = np.hstack([best.items[rows], found.items])
    scores = np.hstack([best.scores[rows], found.scores])
    keep = np.argsort(-scores, axis=1, kind="stable")[:, :best.items.shape[1]]
    best.items[rows] = np.take_along_axis(items, keep, axis=1)
    best.scores[rows] = np.take_along_axis(scores, keep, axis=1)


class ImplicitALS(BatchRecommender):
    """Hu, Koren & Volinsky's weighted ALS on purchase confidence ``alpha * weight * log(1 + orders)``."""

    name = "als"
    fits_on_every_core = True

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0, iterations: int = 15,
                 threads: int = 2, seed: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.threads = threads
        self.seed = seed

    def fit(self, data: Interactions) -> "ImplicitALS":
        self.data = data
        pairs = data.pairs
        confidence = data.matrix(np.log1p(pairs["orders"].to_numpy()) * pairs["weight"].to_numpy()).astype(np.float32)
        # implicit runs its own threads; BLAS threads on top of them only contend.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations, num_threads=self.threads,
                                            random_state=self.seed)
            model.fit(confidence.tocsr(), show_progress=False)
        self.user_factors, self.item_factors = model.user_factors, model.item_factors
        return self

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        return FactorBlock(self.user_factors[user_rows], self.item_factors)
