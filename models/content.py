"""Content-based similarity: items with alike descriptions, category and price."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models.base import CannotFit, ItemItemRecommender
from models.interactions import Interactions
from models.neighbours import top_neighbours

PRICE_BANDS = 8


class ContentSimilarity(ItemItemRecommender):
    """Cosine similarity of TF-IDF description vectors (words and word pairs), with
    the category and a price band (quantile bucket) appended as extra terms. Each
    item keeps its ``neighbours`` most similar items. Needs item text."""

    name = "content"

    def __init__(self, category_weight: float = 0.5, price_weight: float = 0.3, history_half_life_days: float = 30.0,
                 neighbours: int = 50, max_df: float = 0.2):
        self.category_weight = category_weight
        self.price_weight = price_weight
        self.history_half_life_days = history_half_life_days
        self.neighbours = neighbours
        self.max_df = max_df  # words in more than this share of titles say little and join everything

    def fit(self, data: Interactions) -> "ContentSimilarity":
        self.data = data
        items = data.items.reindex(data.item_ids)
        text = items["text"].fillna("").astype(str) if "text" in items else pd.Series("", index=items.index)
        if (text.str.strip() != "").mean() < 0.5:
            raise CannotFit("fewer than half of the items have a text")
        try:
            words = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_df=self.max_df, sublinear_tf=True, stop_words="english",
                                    dtype=np.float32).fit_transform(text)
        except ValueError as exc:  # every word too rare or too common
            raise CannotFit(f"item texts give no usable words ({exc})") from None
        blocks = [words]
        if "category" in items and items["category"].notna().any():
            blocks.append(self.category_weight * _one_hot(items["category"].fillna("?").astype(str)))
        if "price" in items and items["price"].notna().any():
            bands = pd.qcut(items["price"].rank(method="first"), PRICE_BANDS, labels=False, duplicates="drop")
            blocks.append(self.price_weight * _one_hot(bands.fillna(-1).astype(int).astype(str)))
        vectors = normalize(sp.hstack(blocks).tocsr())
        self.similarity = top_neighbours(vectors, self.neighbours)
        return self


def _one_hot(labels: pd.Series) -> sp.csr_matrix:
    codes, uniques = pd.factorize(labels)
    return sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
                         shape=(len(codes), len(uniques)))
