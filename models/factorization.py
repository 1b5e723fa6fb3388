"""Implicit-feedback matrix factorisation (``implicit``'s ALS, CPU build)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.topk import topk
from threadpoolctl import threadpool_limits

from models.base import BatchRecommender, ScoreBlock, TopN, openmp_threads, pad_top_n
from models.interactions import Interactions


class FactorBlock(ScoreBlock):
    """Scores as user factors . item factors (+ item bias), never materialised for all items."""

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray | None = None):
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.item_bias = item_bias

    def _with_bias(self) -> tuple[np.ndarray, np.ndarray]:
        if self.item_bias is None:
            return self.user_factors, self.item_factors
        ones = np.ones((len(self.user_factors), 1), dtype=np.float32)
        return (np.hstack([self.user_factors, ones]),
                np.hstack([self.item_factors, self.item_bias[:, None].astype(np.float32)]))

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        users, items = self._with_bias()
        take = min(n, items.shape[0])
        # implicit starts one thread per core on every call unless told: inside the trainer's
        # worker threads, that would be two per core.
        ids, scores = topk(items, users, take, filter_query_items=exclude.astype(np.float32).tocsr()
                           if exclude is not None else None,
                           num_threads=openmp_threads())
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        valid = (ids >= 0) & np.isfinite(scores) & (scores > -1e30)
        return pad_top_n(TopN(np.where(valid, ids, -1), np.where(valid, scores, -np.inf).astype(np.float32)), n)

    def at(self, positions: np.ndarray, cols: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        users, items = self._with_bias()
        out = np.empty(len(positions), dtype=np.float32)
        # In chunks: the gathered factor rows of millions of pairs would take gigabytes.
        for start in range(0, len(positions), chunk):
            part = slice(start, start + chunk)
            out[part] = np.einsum("ij,ij->i", users[positions[part]], items[cols[part]])
        return out


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
