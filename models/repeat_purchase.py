"""Repeat purchases: what a customer bought before, they often buy again."""

from __future__ import annotations

import numpy as np

from models.base import BatchRecommender, ScoreBlock, SparseBlock
from models.interactions import Interactions


class RepeatPurchase(BatchRecommender):
    """Distinct orders of the item by the user, each pair's weight halving every
    ``half_life_days`` since its last purchase."""

    name = "repeat"
    capabilities = frozenset({"personal"})

    def __init__(self, half_life_days: float = 90.0):
        self.half_life_days = half_life_days

    def fit(self, data: Interactions) -> "RepeatPurchase":
        self.data = data
        return self

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        return SparseBlock(self.data.decayed(self.half_life_days)[user_rows])
