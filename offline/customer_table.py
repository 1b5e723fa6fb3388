"""The customer feature table: RFM and basket behaviour plus encoded price band and country."""

from __future__ import annotations

import pandas as pd

TOP_COUNTRIES = 8
PRICE_BANDS = 5


def customer_feature_table(history: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """One row per customer: their ``models.segments.customer_features`` (as segmentation computed
    them), ``price_band``, the quintile (0 = cheapest) of the customer's mean unit price, and
    ``country_*``, one-hot encoding the most common countries, the rest as other."""
    table = features.assign(price_band=pd.qcut(features["avg_unit_price"].rank(method="first"), PRICE_BANDS,
                                               labels=False).astype(int))
    country = _most_common(history, "country")
    top = country.value_counts().head(TOP_COUNTRIES).index
    country = country.where(country.isin(top), "other").reindex(table.index).fillna("other")
    dummies = pd.get_dummies(country, prefix="country", dtype=int)
    return table.join(dummies)


def _most_common(history: pd.DataFrame, column: str) -> pd.Series:
    """Each customer's most frequent value of ``column`` (ties: the first in sort order)."""
    counts = history.groupby(["user_id", column], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["user_id", "n", column], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("user_id").set_index("user_id")[column]
