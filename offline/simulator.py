"""A shop simulator with planted structure, for machines without the real data.

Items belong to categories; every customer prefers one or two of them and
buys from those most of the time, with best-sellers more likely within each
category. A recommender that learns anything should find that structure.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

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
    return _simulated(n_users, n_items, orders_per_user, days, preference_strength, seed, start)[0]


def planted_preferences(**shop) -> pd.DataFrame:
    """The chance that an order line of each customer (rows, by user_id) is each item (columns, by
    item_id), in the history ``simulate_history(**shop)`` makes. Lines are drawn independently of
    the past, so ranking by it is the best any recommender can do on that history: the ceiling
    its scores are measured against."""
    arguments = inspect.signature(simulate_history).bind(**shop)
    arguments.apply_defaults()
    _, favourites, appeal, item_category = _simulated(**arguments.arguments)
    n_users, n_items, preference_strength = (arguments.arguments[name] for name in
                                             ("n_users", "n_items", "preference_strength"))
    n_categories = len(CATEGORIES)
    category_share = np.zeros(n_items)
    for category in range(n_categories):
        members = item_category == category
        category_share[members] = appeal[members] / appeal[members].sum()
    in_category = item_category[None, :] == np.arange(n_categories)[:, None]  # categories x items
    per_category = in_category * category_share  # the chance of each item, given the line's category
    chosen = np.zeros((n_users, n_categories))
    for user, liked in enumerate(favourites):
        chosen[user, liked] = preference_strength / len(liked)
    chosen += (1 - preference_strength) / n_categories
    return pd.DataFrame(chosen @ per_category, index=[f"sim{user:05d}" for user in range(n_users)],
                        columns=[f"{10000 + item}" for item in range(n_items)])


def _simulated(n_users: int, n_items: int, orders_per_user: float, days: int, preference_strength: float,
               seed: int, start: str) -> tuple[pd.DataFrame, list[np.ndarray], np.ndarray, np.ndarray]:
    """The history, each customer's favourite categories, each item's appeal and category."""
    rng = np.random.default_rng(seed)
    item_category = np.arange(n_items) % len(CATEGORIES)
    # Zipf-like popularity inside each category.
    appeal = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    item_price = np.round(rng.lognormal(mean=1.0, sigma=0.6, size=n_items), 2) + 0.1
    by_category = [np.flatnonzero(item_category == c) for c in range(len(CATEGORIES))]

    rows = []
    favourites_of = []
    start_ts = pd.Timestamp(start)
    order_no = 100000
    for user in range(n_users):
        favourites = rng.choice(len(CATEGORIES), size=rng.integers(1, 3), replace=False)
        favourites_of.append(favourites)
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
    history = history.sort_values(["timestamp", "order_id"], kind="stable").reset_index(drop=True)
    return history, favourites_of, appeal, item_category


def planted_category(item_id: str, n_categories: int = len(CATEGORIES)) -> str:
    """The category an item was planted in (tests use it to check what models learn)."""
    return CATEGORIES[(int(item_id) - 10000) % n_categories]


def simulate_catalog(n_users: int, n_items: int, n_lines: int, days: int = 365, n_categories: int = 200,
                     preference_strength: float = 0.8, seed: int = 7,
                     start: str = "2024-01-01") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A large shop, generated in bulk: (order lines in the history schema, items file).

    Customers differ in activity (a heavy tail); each prefers one category and buys
    from it ``preference_strength`` of the time, best-sellers more likely within it.
    A customer's lines of one day form one order. Item texts name their category.
    """
    rng = np.random.default_rng(seed)
    shop = _CatalogShop.of(rng, n_items, n_categories)
    history = shop.order_lines(rng, 0, n_users, n_lines, days, preference_strength, start)
    return history.sort_values("timestamp", kind="stable").reset_index(drop=True), shop.catalog()


def simulate_catalog_files(folder: Path, n_users: int, n_items: int, n_lines: int, parts: int, days: int = 365,
                           n_categories: int = 200, preference_strength: float = 0.8, seed: int = 7,
                           start: str = "2024-01-01") -> pd.DataFrame:
    """The shop of ``simulate_catalog`` too large for one frame: its customers split into ``parts``
    ranges, each range's order lines drawn on its own and written to ``folder`` as one Parquet file.
    Returns the items file. Each part holds ``1/parts`` of the customers and of the lines."""
    rng = np.random.default_rng(seed)
    shop = _CatalogShop.of(rng, n_items, n_categories)
    bounds = np.linspace(0, n_users, parts + 1).astype(int)
    for part, (first, last) in enumerate(zip(bounds[:-1], bounds[1:])):
        part_rng = np.random.default_rng([seed, part])
        lines = shop.order_lines(part_rng, int(first), int(last - first), n_lines // parts, days,
                                 preference_strength, start)
        lines.to_parquet(folder / f"part-{part:04d}.parquet", index=False)
    return shop.catalog()


@dataclass
class _CatalogShop:
    """Each item's category and appeal, and the cumulative appeal within each category that
    order lines are drawn from (inverse-transform sampling)."""

    item_category: np.ndarray
    appeal: np.ndarray
    by_category: np.ndarray
    starts: np.ndarray
    cumulative: np.ndarray
    base: np.ndarray
    totals: np.ndarray

    @classmethod
    def of(cls, rng: np.random.Generator, n_items: int, n_categories: int) -> "_CatalogShop":
        item_category = rng.permutation(np.arange(n_items) % n_categories)  # no category left empty
        appeal = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
        by_category = np.argsort(item_category, kind="stable")
        starts = np.searchsorted(item_category[by_category], np.arange(n_categories + 1))
        cumulative = np.cumsum(appeal[by_category])
        base = np.concatenate([[0.0], cumulative])[starts[:-1]]
        totals = cumulative[np.maximum(starts[1:] - 1, 0)] - base
        return cls(item_category, appeal, by_category, starts, cumulative, base, totals)

    def order_lines(self, rng: np.random.Generator, first_user: int, n_users: int, n_lines: int, days: int,
                    preference_strength: float, start: str) -> pd.DataFrame:
        """``n_lines`` order lines of customers ``first_user .. first_user + n_users - 1``."""
        n_categories = len(self.starts) - 1
        activity = rng.pareto(1.5, n_users) + 1.0
        users = rng.choice(n_users, size=n_lines, p=activity / activity.sum())
        favourite = rng.integers(0, n_categories, n_users)
        category = np.where(rng.random(n_lines) < preference_strength, favourite[users],
                            rng.integers(0, n_categories, n_lines))
        target = self.base[category] + rng.random(n_lines) * self.totals[category]
        position = np.clip(np.searchsorted(self.cumulative, target), self.starts[category],
                           self.starts[category + 1] - 1)
        items = self.by_category[position]
        day = rng.integers(0, days, n_lines)
        users = users.astype(np.int64) + first_user
        return pd.DataFrame({
            "order_id": _labels(users * days + day, "o"), "user_id": _labels(users, "c"),
            "item_id": _labels(items, "p"), "description": "",
            "quantity": rng.integers(1, 5, n_lines), "price": np.round(1 + 20 * self.appeal[items] ** 0.2, 2),
            "timestamp": pd.Timestamp(start) + pd.to_timedelta(day * 86400 + rng.integers(0, 86400, n_lines),
                                                               unit="s"),
            "country": "Simland",
        }).drop_duplicates(["order_id", "item_id"])

    def catalog(self) -> pd.DataFrame:
        return pd.DataFrame({"item_id": _labels(np.arange(len(self.appeal)), "p"),
                             "text": [f"category {c} item {i}" for i, c in enumerate(self.item_category)],
                             "category": [f"category {c}" for c in self.item_category]})


def _labels(codes: np.ndarray, prefix: str) -> pd.Series:
    """String ids for integer codes, built once per distinct code (fast for millions of rows)."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    names = np.array([f"{prefix}{code}" for code in distinct], dtype=object)
    return pd.Series(names[inverse]).astype(str)
