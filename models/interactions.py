"""Implicit feedback as the batch models see it.

Like Surprise's ``Trainset``, raw ids (strings) are kept apart from the
integer rows and columns the algorithms use. The item index is fixed when the
data is built, so a slice of the history (``until``) scores the same columns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

DAY = 86400.0
EVENT_COLUMNS = ["user_id", "item_id", "order_id", "timestamp", "quantity", "price", "weight"]


@dataclass
class Interactions:
    """Purchases in a fixed item space.

    ``events`` holds one row per order line (``EVENT_COLUMNS``; ``weight`` is how strong
    a signal the line is, 1 for a purchase, from a rating where the shop has them);
    matrices are users x items and built lazily: ``orders`` counts distinct orders per
    pair, ``last_age_days`` is 1 + days from the pair's last purchase to ``end``.
    """

    events: pd.DataFrame
    item_ids: np.ndarray
    items: pd.DataFrame = field(default_factory=pd.DataFrame)  # item_id-indexed: text, category, price
    end: pd.Timestamp | None = None

    def __post_init__(self):
        self.item_index = {item: n for n, item in enumerate(self.item_ids)}
        self.events = self.events[self.events["item_id"].isin(self.item_index)]
        self.user_ids = np.array(sorted(self.events["user_id"].unique()), dtype=object)
        self.user_index = {user: n for n, user in enumerate(self.user_ids)}
        if self.end is None:
            self.end = self.events["timestamp"].max() if len(self.events) else pd.Timestamp(0)
        self._cache: dict[str, object] = {}
        # Models fitted side by side in threads ask for the same tables: each is built once.
        self._building = threading.RLock()

    def __getstate__(self) -> dict:
        return {name: value for name, value in vars(self).items() if name != "_building"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._building = threading.RLock()

    @classmethod
    def from_frame(cls, events: pd.DataFrame, items: pd.DataFrame | None = None,
                   end: pd.Timestamp | None = None) -> "Interactions":
        """Build from order lines; the item space is the items these events bought."""
        item_ids = np.array(sorted(events["item_id"].unique()), dtype=object)
        if "weight" not in events:
            events = events.assign(weight=1.0)
        return cls(events[EVENT_COLUMNS].copy(), item_ids, items if items is not None else pd.DataFrame(), end)

    def until(self, end: pd.Timestamp) -> "Interactions":
        """The history strictly before ``end``, in the same item space."""
        return Interactions(self.events[self.events["timestamp"] < end], self.item_ids, self.items, end)

    def customer_sample(self, max_lines: int, seed: int = 0) -> "Interactions":
        """A random share of customers, with all their lines, of about ``max_lines`` lines; in the
        same item space and calendar. The whole history when it is no larger."""
        if len(self.events) <= max_lines:
            return self
        rng = np.random.default_rng(seed)
        chosen = self.user_ids[rng.random(self.n_users) < max_lines / len(self.events)]
        return Interactions(self.events[self.events["user_id"].isin(set(chosen))], self.item_ids, self.items, self.end)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def rows(self, user_ids) -> np.ndarray:
        return np.array([self.user_index[u] for u in user_ids], dtype=np.int64)

    def _pairs(self) -> pd.DataFrame:
        return self.cached("pairs", self._customer_item_pairs)

    def _customer_item_pairs(self) -> pd.DataFrame:
        """One row per customer-item pair, in the order each pair first occurs: distinct orders,
        quantity, last purchase and strongest weight. Grouped on integer codes: hashing millions
        of id strings would take most of the time."""
        events = self.events
        key = self.event_rows * self.n_items + self._codes("item_id", self.item_ids)
        pair_of_line, keys = pd.factorize(key)  # pairs numbered in the order they first occur
        pairs = pd.DataFrame({"quantity": events["quantity"].to_numpy(), "last": events["timestamp"].to_numpy(),
                              "weight": events["weight"].to_numpy()}).groupby(pair_of_line).agg(
            quantity=("quantity", "sum"), last=("last", "max"), weight=("weight", "max"))
        order_codes = pd.factorize(events["order_id"])[0]
        n_orders = int(order_codes.max(initial=0)) + 1
        distinct = pd.unique(pair_of_line.astype(np.int64) * n_orders + order_codes)
        orders = np.bincount(distinct // n_orders, minlength=len(keys))
        row, col = keys // self.n_items, keys % self.n_items
        return pd.DataFrame({
            "user_id": pd.array(self.user_ids[row], dtype=events["user_id"].dtype),
            "item_id": pd.array(self.item_ids[col], dtype=events["item_id"].dtype),
            "orders": orders, "quantity": pairs["quantity"].to_numpy(), "last": pairs["last"].to_numpy(),
            "weight": pairs["weight"].to_numpy(),
            "row": row, "col": col,
            "age_days": (self.end - pairs["last"]).dt.total_seconds().to_numpy() / DAY})

    @property
    def event_rows(self) -> np.ndarray:
        """Each order line's customer row."""
        return self.cached("event-rows", lambda: self._codes("user_id", self.user_ids))

    def _codes(self, column: str, ids: np.ndarray) -> np.ndarray:
        """Each order line's position in ``ids`` by its ``column``: each distinct id is looked up once."""
        codes, uniques = pd.factorize(self.events[column])
        return pd.Index(ids).get_indexer(uniques)[codes].astype(np.int64)

    def matrix(self, values: np.ndarray | str) -> sp.csr_matrix:
        pairs = self._pairs()
        data = pairs[values].to_numpy(dtype=np.float64) if isinstance(values, str) else values
        return sp.csr_matrix((data, (pairs["row"].to_numpy(), pairs["col"].to_numpy())),
                             shape=(self.n_users, self.n_items))

    @property
    def bought(self) -> sp.csr_matrix:
        """1 where the user bought the item at least once."""
        return self.cached("bought", lambda: self.matrix(np.ones(len(self._pairs()))))

    @property
    def orders(self) -> sp.csr_matrix:
        return self.cached("orders", lambda: self.matrix("orders"))

    def decayed(self, half_life_days: float) -> sp.csr_matrix:
        """Distinct orders per pair times its weight, halved every ``half_life_days`` since its last purchase."""
        def decayed_orders() -> sp.csr_matrix:
            pairs = self._pairs()
            decay = np.exp2(-pairs["age_days"].to_numpy() / half_life_days)
            return self.matrix(pairs["orders"].to_numpy() * pairs["weight"].to_numpy() * decay)

        return self.cached(f"decayed:{half_life_days}", decayed_orders)

    @property
    def last_age_days(self) -> sp.csr_matrix:
        return self.cached("age", lambda: self.matrix(self._pairs()["age_days"].to_numpy() + 1.0))

    def preset(self, key: str, value) -> None:
        """Give a slice of the customers a value of the whole shop's, under ``cached``'s ``key``
        (an item's buyers are counted over every customer, not the slice's)."""
        with self._building:
            self._cache[key] = value

    def cached(self, key: str, compute):
        """``compute()`` once per data set; for values derived from it by the models."""
        with self._building:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    @property
    def pairs(self) -> pd.DataFrame:
        return self._pairs()
