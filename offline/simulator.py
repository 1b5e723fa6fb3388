"""A shop simulator with planted structure, for machines without the real data.

Items belong to categories; every customer prefers one or two of them and
buys from those most of the time, with best-sellers more likely within each
category. A recommender that learns anything should find that structure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES = ["candles", "mugs", "garden", "stationery", "toys", "kitchen", "bags", "christmas"]


def simulate_history(
    n_users: int = 300,
    n_items: int = 240,
    orders_per_user: float = 4.0,
    days: int = 120,
    preference_strength: float = 0.85,
    seed: int = 7,
    start: str = "2024-01-01",
) -> pd.DataFrame:
    """Orders in the history schema (see ``offline.retail_history.HISTORY_COLUMNS``)."""
    rng = np.random.default_rng(seed)
    item_category = np.arange(n_items) % len(CATEGORIES)
    # Zipf-like popularity inside each category.
    appeal = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    item_price = np.round(rng.lognormal(mean=1.0, sigma=0.6, size=n_items), 2) + 0.1
    by_category = [np.flatnonzero(item_category == c) for c in range(len(CATEGORIES))]

    rows = []
    start_ts = pd.Timestamp(start)
    order_no = 100000
    for user in range(n_users):
        favourites = rng.choice(len(CATEGORIES), size=rng.integers(1, 3), replace=False)
        for _ in range(max(1, rng.poisson(orders_per_user))):
            order_no += 1
            when = start_ts + pd.Timedelta(seconds=int(rng.integers(0, days * 86400)))
            n_lines = int(rng.integers(2, 9))
            for _ in range(n_lines):
                category = rng.choice(favourites) if rng.random() < preference_strength else rng.integers(len(CATEGORIES))
                pool = by_category[category]
                item = rng.choice(pool, p=appeal[pool] / appeal[pool].sum())
                rows.append((str(order_no), f"sim{user:05d}", f"{10000 + item}",
                             f"{CATEGORIES[item_category[item]].upper()} ITEM {item}",
                             int(rng.integers(1, 13)), float(item_price[item]), when, "Simland"))
    history = pd.DataFrame(rows, columns=["order_id", "user_id", "item_id", "description", "quantity",
                                          "price", "timestamp", "country"])
    history = history.drop_duplicates(["order_id", "item_id"])
    return history.sort_values(["timestamp", "order_id"], kind="stable").reset_index(drop=True)


def planted_category(item_id: str, n_categories: int = len(CATEGORIES)) -> str:
    """The category an item was planted in (tests use it to check what models learn)."""
    return CATEGORIES[(int(item_id) - 10000) % n_categories]
