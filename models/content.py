"""Content-based similarity: items with alike descriptions, category and price."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
import scipy.sparse as sp

from models.base import ItemItemRecommender
from models.interactions import Interactions

PRICE_BANDS = 8


class ContentSimilarity(ItemItemRecommender):
    """Cosine similarity of TF-IDF description vectors (words and word pairs), with
    the category and a price band (quantile bucket) appended as extra terms."""

    name = "content"

    def __init__(self, category_weight: float = 0.5, price_weight: float = 0.3, history_half_life_days: float = 30.0):
        self.category_weight = category_weight
        self.price_weight = price_weight
        self.history_half_life_days = history_half_life_days

    def fit(self, data: Interactions) -> "ContentSimilarity":
        self.data = data
        items = data.items.reindex(data.item_ids)
        text = items["text"].fillna("").astype(str) if "text" in items else pd.Series("", index=items.index)
        text = text.where(text.str.strip() != "", pd.Series(data.item_ids, index=items.index).astype(str))
        blocks = [TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit_transform(text)]
        if "category" in items and items["category"].notna().any():
            blocks.append(self.category_weight * _one_hot(items["category"].fillna("?").astype(str)))
        if "price" in items and items["price"].notna().any():
            bands = pd.qcut(items["price"].rank(method="first"), PRICE_BANDS, labels=False, duplicates="drop")
            blocks.append(self.price_weight * _one_hot(bands.fillna(-1).astype(int).astype(str)))
        vectors = normalize(sp.hstack(blocks).tocsr())
        similarity = (vectors @ vectors.T).toarray().astype(np.float32)
        np.fill_diagonal(similarity, 0.0)
        self.similarity = similarity
        return self


def _one_hot(labels: pd.Series) -> sp.csr_matrix:
    codes, uniques = pd.factorize(labels)
    return sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(uniques)))
