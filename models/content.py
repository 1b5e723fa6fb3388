"""Content-based similarity: items with alike descriptions, category and price."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from models.base import CannotFit, ItemItemRecommender
from models.interactions import Interactions
from models.neighbours import top_neighbours

PRICE_BANDS = 8
MAX_TITLES_PER_WORD = 3_000


class ContentSimilarity(ItemItemRecommender):
    """Cosine similarity of TF-IDF description vectors (words and word pairs), with
    the category and a price band (quantile bucket) appended as extra terms, between
    items whose descriptions share a word. Each
    item keeps its ``neighbours`` most similar items among the ``max_neighbour_items`` most
    bought (on a large catalog, a title's neighbours among rarely bought items are seldom
    bought either, and the self-join's cost grows with both sides). Needs item text."""

    name = "content"

    def __init__(self, category_weight: float = 0.5, price_weight: float = 0.3, history_half_life_days: float = 30.0,
                 neighbours: int = 50, max_df: float = 0.2, max_neighbour_items: int = 20_000):
        self.category_weight = category_weight
        self.price_weight = price_weight
        self.history_half_life_days = history_half_life_days
        self.neighbours = neighbours
        self.max_df = max_df  # words in more than this share of titles say little and join everything
        self.max_neighbour_items = max_neighbour_items

    def fit(self, data: Interactions) -> "ContentSimilarity":
        self.data = data
        return self.fit_items(data.items.reindex(data.item_ids), np.asarray(data.bought.sum(axis=0)).ravel())

    def fit_items(self, items: pd.DataFrame, buyers: np.ndarray) -> "ContentSimilarity":
        """Learn from the item file alone (``items``: text, category, price, one row per item
        column) and each item's buyers: a distributed engine fits it where the catalog is."""
        text = items["text"].fillna("").astype(str) if "text" in items else pd.Series("", index=items.index)
        if (text.str.strip() != "").mean() < 0.5:
            raise CannotFit("fewer than half of the items have a text")
        try:
            # A word shared by thousands of titles joins them all and says little about any.
            max_df = max(1, min(int(self.max_df * len(text)), MAX_TITLES_PER_WORD))
            words = TfidfVectorizer(ngram_range=(1, 2), min_df=1, max_df=max_df, sublinear_tf=True,
                                    stop_words="english", dtype=np.float32).fit_transform(text)
        except ValueError as exc:  # every word too rare or too common
            raise CannotFit(f"item texts give no usable words ({exc})") from None
        traits = []
        if "category" in items and items["category"].notna().any():
            traits.append((self.category_weight, pd.factorize(items["category"])[0]))
        prices = items["price"].where(items["price"] > 0) if "price" in items else pd.Series(dtype=float)
        if prices.nunique() > 1:
            bands = pd.qcut(prices.rank(method="first"), PRICE_BANDS, labels=False, duplicates="drop")
            traits.append((self.price_weight, bands.fillna(-1).astype(int).to_numpy()))
        among = np.sort(np.argsort(-buyers, kind="stable")[:self.max_neighbour_items])
        self.similarity = top_neighbours(normalize(words.tocsr()), self.neighbours, _with_traits(traits), among=among)
        return self


def _with_traits(traits: list[tuple[float, np.ndarray]]):
    """The cosine of title vectors with the category and price band appended as terms of the
    given weights, for items whose titles share a word: joining on the traits themselves would
    pair every item with thousands of others in its band. Codes below 0 match nothing."""
    norm = 1.0 + sum(weight ** 2 for weight, _ in traits)

    def measure(rows: np.ndarray, cols: np.ndarray, dots: np.ndarray) -> np.ndarray:
        total = dots.astype(np.float64)
        for weight, codes in traits:
            total += weight ** 2 * ((codes[rows] == codes[cols]) & (codes[rows] >= 0))
        return (total / norm).astype(np.float32)
    return measure
