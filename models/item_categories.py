"""Item categories derived from descriptions, for catalogs that have none.

TF-IDF vectors, reduced by LSA and normalised (so K-Means groups by topic,
not by description length), clustered by K-Means; each cluster is named after its
most typical product (the description nearest its centre), which a merchandiser
recognises where a list of terms says little.

>>> texts = pd.Series(["red tea cup", "blue tea cup", "green tea cup", "tea cup set", "tea cup saucer",
...                    "paper party bag", "party bag gift", "party bag set", "party paper bag", "gift bag party"])
>>> categories = derive_categories(texts, k=2)
>>> categories.nunique(), categories.iat[0] == categories.iat[1], categories.iat[0] == categories.iat[5]
(2, True, False)
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

N_CATEGORIES = 15
LSA_DIMENSIONS = 60


# The catalog last derived and its categories: training asks for the same catalog's categories
# once per validation period and again for the whole history and the exported item table (15 s
# each for Book-Crossing's 340,000 titles), from threads side by side.
_last_derived: tuple[bytes, pd.Series] | None = None
_deriving = threading.Lock()


def catalog_categories(items: pd.DataFrame) -> pd.Series:
    """A category for each row of an item_id-indexed catalog (``text``, ``category``): the
    catalog's own where it has one, else derived from the texts."""
    global _last_derived
    category = items["category"] if "category" in items else pd.Series(np.nan, index=items.index, dtype=object)
    if category.isna().any():
        text = items["text"] if "text" in items else pd.Series("", index=items.index)
        key = pd.util.hash_pandas_object(text).to_numpy().tobytes()
        with _deriving:
            if _last_derived is None or _last_derived[0] != key:
                _last_derived = key, derive_categories(text)
            category = category.fillna(_last_derived[1])
    return category


def derive_categories(texts: pd.Series, k: int = N_CATEGORIES, seed: int = 0) -> pd.Series:
    """A category name for each text, indexed like ``texts``."""
    text = texts.fillna("").astype(str).str.lower()
    vectorizer = TfidfVectorizer(stop_words="english", min_df=2, token_pattern=r"(?u)\b[a-z]{3,}\b")
    try:
        vectors = vectorizer.fit_transform(text)
    except ValueError:  # no term appears twice: nothing to group by
        vectors = None
    if vectors is None or vectors.shape[1] < 2:  # one term at most: no topics to tell apart
        return pd.Series("", index=texts.index)
    k = max(1, min(k, vectors.shape[0] // 5, _distinct_rows(vectors, enough=k)))
    dims = max(2, min(LSA_DIMENSIONS, vectors.shape[1] - 1))
    lsa = make_pipeline(TruncatedSVD(dims, random_state=seed), Normalizer(copy=False))
    reduced = lsa.fit_transform(vectors)
    clusters = KMeans(n_clusters=k, random_state=seed, n_init=5).fit(reduced)
    labels = clusters.labels_
    originals = texts.fillna("").astype(str).str.strip().to_numpy()
    names: dict[int, str] = {}
    for cluster in np.unique(labels):  # K-Means may leave clusters empty on repetitive text
        members = np.flatnonzero(labels == cluster)
        typical = members[np.argmax(reduced[members] @ clusters.cluster_centers_[cluster])]
        name = f"{originals[typical][:40]} & similar"
        names[cluster] = name if name not in names.values() else f"{name} ({cluster + 1})"
    return pd.Series([names[c] for c in labels], index=texts.index)


def _distinct_rows(vectors, enough: int) -> int:
    """How many distinct rows the sparse ``vectors`` hold, counting no further than ``enough``."""
    vectors.sort_indices()
    seen = set()
    for start, stop in zip(vectors.indptr[:-1], vectors.indptr[1:]):
        seen.add((vectors.indices[start:stop].tobytes(), vectors.data[start:stop].tobytes()))
        if len(seen) >= enough:
            break
    return len(seen)
