"""The customer feature table: RFM and basket behaviour plus encoded price band and country."""

from __future__ import annotations

import pandas as pd

from models.interactions import Interactions
from models.segments import customer_features

TOP_COUNTRIES = 8
PRICE_BANDS = 5


def customer_feature_table(history: pd.DataFrame, data: Interactions) -> pd.DataFrame:
    """One row per customer. ``price_band`` is the quintile (0 = cheapest) of the customer's
    mean unit price; ``country_*`` one-hot encodes the most common countries, the rest as other."""
    table = customer_features(data)
    table["price_band"] = pd.qcut(table["avg_unit_price"].rank(method="first"), PRICE_BANDS, labels=False).astype(int)
    country = history.groupby("user_id")["country"].agg(lambda s: s.mode().iat[0] if not s.mode().empty else "")
    top = country.value_counts().head(TOP_COUNTRIES).index
    country = country.where(country.isin(top), "other").reindex(table.index).fillna("other")
    dummies = pd.get_dummies(country, prefix="country", dtype=int)
    return table.join(dummies)
