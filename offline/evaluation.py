"""Offline evaluation: held-out splits of a history, two views, top-k metrics.

A split keeps a ``train`` history (its own item space) and, for each test user,
the item columns they bought in the held-out part that exist in train. Four ways
to hold out, one per kind of data:

* ``global_time_split``: everything from one date on (users share a calendar);
* ``last_basket_split``: each user's last order (baskets, users active at different times);
* ``last_items_split``: each user's most recent share of interactions (ratings-style logs);
* ``random_items_split``: a seeded random share per user (no usable time at all).

ALL lets items bought before count; NEW drops them from both the list and the relevant set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.base import TopN
from models.interactions import Interactions

VIEWS = ("ALL", "NEW")
METRICS = ("precision", "recall", "map", "ndcg")


@dataclass
class HoldoutSplit:
    train: Interactions
    test_users: np.ndarray  # raw user ids, in train
    relevant: list[set[int]]  # per test user: item columns bought in the held-out part
    protocol: str = "global-time"
    new_relevant: list[set[int]] | None = field(default=None, repr=False)  # ``view_relevance``'s NEW sets, once known

    @property
    def user_rows(self) -> np.ndarray:
        return self.train.rows(self.test_users)

    def sample(self, max_users: int, seed: int = 0) -> "HoldoutSplit":
        """At most ``max_users`` test users, drawn at random (a fixed seed)."""
        if len(self.test_users) <= max_users:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.test_users), max_users, replace=False))
        return HoldoutSplit(self.train, self.test_users[keep], [self.relevant[n] for n in keep], self.protocol)


def default_cut(events: pd.DataFrame, test_days: int = 30) -> pd.Timestamp:
    """The start of the last ``test_days`` days (midnight ``test_days`` days before the last day)."""
    return events["timestamp"].max().normalize() - pd.Timedelta(days=test_days)


def split_held_out(data: Interactions, held_out: np.ndarray, protocol: str, end: pd.Timestamp | None = None) -> HoldoutSplit:
    """Train on the events not ``held_out`` (a boolean mask over ``data.events``); test users are
    those with held-out items that train knows."""
    events = data.events
    train = Interactions.from_frame(events[~held_out], data.items, end=end)
    test = events[held_out & events["user_id"].isin(train.user_index).to_numpy()]
    cols = pd.Index(train.item_ids).get_indexer(test["item_id"])
    known = cols >= 0
    # Each test user's item columns, users in sorted order: one sort, not a Python call per user.
    codes, users = pd.factorize(test["user_id"].to_numpy()[known], sort=True)
    order = np.argsort(codes, kind="stable")
    grouped = cols[known][order]
    bounds = np.searchsorted(codes[order], np.arange(len(users) + 1))
    relevant = [set(grouped[start:stop].tolist()) for start, stop in zip(bounds[:-1], bounds[1:])]
    return HoldoutSplit(train, np.asarray(users, dtype=object), relevant, protocol)


def holdout_split(data: Interactions, cut: pd.Timestamp) -> HoldoutSplit:
    """Split at ``cut``; the train side gets its own item space (items bought before the cut)."""
    return split_held_out(data, (data.events["timestamp"] >= cut).to_numpy(), "global-time", end=cut)


def last_basket_split(data: Interactions) -> HoldoutSplit:
    """Each user's last order held out, for users with at least two orders."""
    events = data.events
    order_time = events.groupby(["user_id", "order_id"], sort=False)["timestamp"].transform("max")
    ranked = events.assign(order_time=order_time).sort_values(["user_id", "order_time", "order_id"], kind="stable")
    last_order = ranked.groupby("user_id")["order_id"].transform("last")
    orders = ranked.groupby("user_id")["order_id"].transform("nunique")
    held = (ranked["order_id"] == last_order) & (orders >= 2)
    return split_held_out(data, held.reindex(events.index).to_numpy(), "last-basket")


def last_items_split(data: Interactions, share: float = 0.2) -> HoldoutSplit:
    """Each user's most recent ``share`` of interactions (at least one, never all) held out."""
    events = data.events
    position = events.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id").cumcount()
    return split_held_out(data, _tail(events, position.reindex(events.index), share), "last-items")


def random_items_split(data: Interactions, share: float = 0.2, seed: int = 0) -> HoldoutSplit:
    """A seeded random ``share`` of each user's interactions (at least one, never all) held out."""
    events = data.events
    shuffled = pd.Series(np.random.default_rng(seed).random(len(events)), index=events.index)
    position = shuffled.groupby(events["user_id"]).rank(method="first") - 1
    return split_held_out(data, _tail(events, position, share), "random-items")


PER_CUSTOMER_SPLITS = {"last-basket": last_basket_split, "last-items": last_items_split,
                       "random-items": random_items_split}
PROTOCOLS = ("global-time", *PER_CUSTOMER_SPLITS)


def split_by(data: Interactions, protocol: str, cut: pd.Timestamp) -> HoldoutSplit:
    """``data`` split by ``protocol``; ``global-time`` holds out everything from ``cut`` on."""
    if protocol == "global-time":
        return holdout_split(data, cut)
    if protocol not in PER_CUSTOMER_SPLITS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return PER_CUSTOMER_SPLITS[protocol](data)


def _tail(events: pd.DataFrame, position: pd.Series, share: float) -> np.ndarray:
    """True for the last ``ceil(share * n)`` positions of each user's ``n`` (users with n >= 2)."""
    n = events.groupby("user_id")["item_id"].transform("size")
    held_count = np.ceil(share * n).clip(lower=1)
    return ((position >= n - held_count) & (n >= 2)).to_numpy()


def list_metrics(lists: np.ndarray, relevant: list[set[int]], k: int = 10) -> dict[str, float]:
    """Mean P@k, R@k, MAP@k (AP over min(|relevant|, k)) and NDCG@k (binary gains) of ``lists``
    (users x >= k item columns, -1 for an empty slot) against each user's ``relevant`` set;
    users with nothing relevant are not counted."""
    lists = lists[:, :k]
    hits, sizes = _counted_hits(lists, relevant)
    if len(sizes) == 0:
        return {**dict.fromkeys(METRICS, 0.0), "users": 0}
    ranks = np.arange(1, lists.shape[1] + 1)
    discounts = 1.0 / np.log2(ranks + 1)
    ideal = np.r_[0.0, np.cumsum(discounts)][np.minimum(sizes, k).astype(int)]
    return {
        "precision": float((hits.sum(axis=1) / k).mean()),
        "recall": float((hits.sum(axis=1) / sizes).mean()),
        "map": float(_average_precisions(hits, sizes, k).mean()),
        "ndcg": float(((hits * discounts).sum(axis=1) / ideal).mean()),
        "users": int(len(sizes)),
    }


def average_precisions(lists: np.ndarray, relevant: list[set[int]], k: int = 10) -> np.ndarray:
    """Each counted user's AP@k (as in ``list_metrics``, whose MAP is their mean), in user order:
    what a paired comparison of two models' lists on the same users needs."""
    return _average_precisions(*_counted_hits(lists[:, :k], relevant), k)


def _counted_hits(lists: np.ndarray, relevant: list[set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """For the users with something relevant: per list position, 1 where the item is relevant;
    and each one's number of relevant items."""
    hits = np.array([[item in wanted for item in row] for row, wanted in zip(lists.tolist(), relevant)],
                    dtype=np.float64).reshape(len(relevant), lists.shape[1])
    sizes = np.array([len(wanted) for wanted in relevant], dtype=np.float64)
    counted = sizes > 0
    return hits[counted], sizes[counted]


def _average_precisions(hits: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return (precision_at * hits).sum(axis=1) / np.minimum(sizes, k)


def view_relevance(split: HoldoutSplit, view: str) -> list[set[int]]:
    """The relevant sets of a view: NEW leaves out what the user bought in train."""
    if view == "ALL":
        return split.relevant
    if split.new_relevant is None:
        bought = split.train.bought[split.user_rows]
        starts, bought_items = bought.indptr, bought.indices
        split.new_relevant = [wanted.difference(bought_items[starts[n]:starts[n + 1]].tolist())
                              for n, wanted in enumerate(split.relevant)]
    return split.new_relevant


def evaluate_lists(split: HoldoutSplit, lists: dict[str, np.ndarray], k: int = 10) -> dict[str, dict[str, float]]:
    """Metrics per view of one model's lists (``lists[view]``: test users x k item columns)."""
    train = split.train
    item_popularity = np.asarray(train.bought.sum(axis=0)).ravel()
    self_information = -np.log2(np.maximum(item_popularity, 1) / max(train.n_users, 1))
    results = {}
    for view in VIEWS:
        shown = lists[view][:, :k]
        result = list_metrics(shown, view_relevance(split, view), k)
        valid = shown[shown >= 0]
        result["coverage"] = len(np.unique(valid)) / max(train.n_items, 1)
        result["novelty"] = float(self_information[valid].mean()) if len(valid) else 0.0
        results[view] = result
    return results


def model_lists(model, split: HoldoutSplit, k: int, filler=None, chunk: int = 1024) -> dict[str, np.ndarray]:
    """A fitted model's top-k lists for the split's test users in both views, each filled
    with the ``filler`` model's items (the lists a storefront would be given)."""
    rows = split.user_rows
    out = {view: [] for view in VIEWS}
    for start in range(0, len(rows), chunk):
        block_rows = rows[start:start + chunk]
        bought = split.train.bought[block_rows]
        tops = [m.top_n_views(m.block(block_rows), block_rows, k, bought) for m in (model, filler) if m is not None]
        for n, view in enumerate(VIEWS):  # VIEWS: ALL, then NEW
            out[view].append(filled(*(top[n] for top in tops), k=k).items[:, :k])
    return {view: np.vstack(parts) if parts else np.zeros((0, k), dtype=np.int64) for view, parts in out.items()}


def filled(top: TopN, *fillers: TopN, k: int) -> TopN:
    """``top``'s first ``k`` items, then each filler's items new to the row, up to ``k``."""
    items = np.hstack([top.items[:, :k], *(f.items for f in fillers)])
    scores = np.hstack([top.scores[:, :k], *(np.full(f.items.shape, -np.inf, dtype=np.float32) for f in fillers)])
    usable = items >= 0
    for j in range(1, items.shape[1]):
        usable[:, j] &= ~(items[:, :j] == items[:, j:j + 1]).any(axis=1)
    order = np.argsort(~usable, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(usable, order, axis=1)
    return TopN(np.where(keep, np.take_along_axis(items, order, axis=1), -1),
                np.where(keep, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32))
