"""EASE (Steck 2019): a closed-form linear item-item model for implicit feedback."""

from __future__ import annotations

import numpy as np

from models.base import ItemItemRecommender
from models.interactions import Interactions


class EASE(ItemItemRecommender):
    """Item weights ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1``, zero diagonal.

    Scores use the binary purchase matrix, as the model was fitted on it.
    """

    name = "ease"

    def __init__(self, l2: float = 200.0):
        self.l2 = l2

    def fit(self, data: Interactions) -> "EASE":
        self.data = data
        gram = (data.bought.T @ data.bought).toarray().astype(np.float32)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)  # float32 halves the time; lambda keeps it well conditioned
        weights = -precision / np.diag(precision)
        np.fill_diagonal(weights, 0.0)
        self.similarity = weights.astype(np.float32)
        return self

    def score(self, user_rows) -> np.ndarray:
        return np.asarray(self.data.bought[user_rows] @ self.similarity)
