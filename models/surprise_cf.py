"""Surprise collaborative filtering, adapted honestly to implicit purchases.

Surprise predicts ratings; purchases have no ratings, and a rating predictor
trained on purchase counts alone ranks poorly (every known pair is positive).
Two adaptations make it rank:

* :class:`SurpriseItemKNN` fits Surprise's item-based KNN on log order counts
  and uses its item-item similarity matrix as an item-item scorer.
* :class:`SurpriseSVD` fits Surprise's SVD on purchases (1) and sampled
  non-purchases (0), drawn in proportion to popularity so that "popular but
  not bought" is the signal, then ranks by the learned item bias plus the
  user-item factor product.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from surprise import SVD, Dataset, KNNBasic, Reader

import scipy.sparse as sp

from models.base import BatchRecommender, CannotFit, ItemItemRecommender, ScoreBlock, sparse_top_n
from models.factorization import FactorBlock
from models.interactions import Interactions


def _trainset(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, scale: tuple[float, float]):
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    return Dataset.load_from_df(frame, Reader(rating_scale=scale)).build_full_trainset()


def _inner_to_columns(trainset) -> np.ndarray:
    """Column (our item index) of each Surprise inner item id; raw ids are our indices."""
    return np.array([int(trainset.to_raw_iid(inner)) for inner in range(trainset.n_items)], dtype=np.int64)


class SurpriseItemKNN(ItemItemRecommender):
    """Surprise computes a dense similarity over its items, so it is fitted on the
    ``max_items`` most-bought items; each keeps its ``neighbours`` best."""

    name = "surprise-knn"

    def __init__(self, similarity: str = "cosine", min_support: int = 2, history_half_life_days: float = 30.0,
                 max_items: int = 3000, neighbours: int = 100):
        self.similarity_name = similarity
        self.min_support = min_support
        self.history_half_life_days = history_half_life_days
        self.max_items = max_items
        self.neighbours = neighbours

    def fit(self, data: Interactions) -> "SurpriseItemKNN":
        self.data = data
        buyers = np.asarray(data.bought.sum(axis=0)).ravel()
        kept = np.argsort(-buyers, kind="stable")[: self.max_items]
        pairs = data.pairs[data.pairs["col"].isin(kept)]
        if pairs.empty:
            raise CannotFit("no purchases")
        trainset = _trainset(pairs["row"].to_numpy(), pairs["col"].to_numpy(),
                             np.log1p(pairs["orders"].to_numpy()), (0.0, float(np.log1p(pairs["orders"].max()))))
        algo = KNNBasic(sim_options={"name": self.similarity_name, "user_based": False,
                                     "min_support": self.min_support}, verbose=False)
        try:
            algo.fit(trainset)
        except ZeroDivisionError:
            raise CannotFit(f"{self.similarity_name} similarity is undefined on this data "
                            "(every rating alike)") from None
        columns = _inner_to_columns(trainset)
        local = sparse_top_n(sp.csr_matrix(np.where(np.eye(len(columns), dtype=bool), 0.0,
                                                    np.maximum(algo.sim, 0.0))), self.neighbours)
        found = local.items >= 0
        rows = np.broadcast_to(columns[:, None], found.shape)[found]
        self.similarity = sp.csr_matrix((local.scores[found], (rows, columns[local.items[found]])),
                                        shape=(data.n_items, data.n_items))
        return self


class SurpriseSVD(BatchRecommender):
    """Surprise's SVD runs one Python-level pass per rating, so it is left out past ``max_pairs``."""

    name = "surprise-svd"

    def __init__(self, n_factors: int = 64, n_epochs: int = 20, negatives_per_positive: float = 1.0,
                 lr_all: float = 0.01, reg_all: float = 0.02, seed: int = 0, max_pairs: int = 250_000):
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.negatives_per_positive = negatives_per_positive
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.seed = seed
        self.max_pairs = max_pairs

    def refuses(self, data: Interactions) -> str | None:
        pairs = len(data.pairs)
        return f"{pairs:,} customer-item pairs, over its limit of {self.max_pairs:,}" if pairs > self.max_pairs else None

    def fit(self, data: Interactions) -> "SurpriseSVD":
        self.data = data
        rng = np.random.default_rng(self.seed)
        if (reason := self.refuses(data)) is not None:
            raise CannotFit(reason)
        pairs = data.pairs
        rows, cols = pairs["row"].to_numpy(), pairs["col"].to_numpy()
        popularity = np.asarray(data.bought.sum(axis=0)).ravel() ** 0.75
        n_neg = int(len(rows) * self.negatives_per_positive)
        neg_rows = rng.choice(rows, size=n_neg)  # as many draws per user as they have purchases
        neg_cols = rng.choice(data.n_items, size=n_neg, p=popularity / popularity.sum())
        keep = np.asarray(data.bought[neg_rows, neg_cols]).ravel() == 0
        trainset = _trainset(np.concatenate([rows, neg_rows[keep]]), np.concatenate([cols, neg_cols[keep]]),
                             np.concatenate([np.ones(len(rows)), np.zeros(keep.sum())]), (0.0, 1.0))
        algo = SVD(n_factors=self.n_factors, n_epochs=self.n_epochs, lr_all=self.lr_all, reg_all=self.reg_all,
                   random_state=self.seed)
        algo.fit(trainset)
        columns = _inner_to_columns(trainset)
        self.item_factors = np.zeros((data.n_items, self.n_factors))
        self.item_bias = np.full(data.n_items, algo.bi.min() if len(algo.bi) else 0.0)
        self.item_factors[columns] = algo.qi
        self.item_bias[columns] = algo.bi
        user_rows = np.array([int(trainset.to_raw_uid(inner)) for inner in range(trainset.n_users)])
        self.user_factors = np.zeros((data.n_users, self.n_factors))
        self.user_factors[user_rows] = algo.pu
        return self

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        return FactorBlock(self.user_factors[user_rows], self.item_factors, self.item_bias)
