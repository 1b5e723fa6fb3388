"""The offline evaluation protocol: a temporal holdout, two views, top-k metrics.

Train on everything before ``cut``; test users bought in both periods; an
item is relevant when the user bought it after ``cut`` and it exists in
train. ALL lets items bought before count; NEW drops them from both the list
and the relevant set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.interactions import Interactions
from models.ranking_metrics import average_precision_at_k, ndcg_at_k, precision_at_k, recall_at_k

VIEWS = ("ALL", "NEW")
METRICS = ("precision", "recall", "map", "ndcg")


@dataclass
class HoldoutSplit:
    train: Interactions
    test_users: np.ndarray  # raw user ids, in train
    relevant: list[set[int]]  # per test user: item columns bought after the cut

    @property
    def user_rows(self) -> np.ndarray:
        return self.train.rows(self.test_users)


def default_cut(events: pd.DataFrame, test_days: int = 30) -> pd.Timestamp:
    """The start of the last ``test_days`` days (midnight ``test_days`` days before the last day)."""
    return events["timestamp"].max().normalize() - pd.Timedelta(days=test_days)


def holdout_split(data: Interactions, cut: pd.Timestamp) -> HoldoutSplit:
    """Split at ``cut``; the train side gets its own item space (items bought before the cut)."""
    train = Interactions.from_frame(data.events[data.events["timestamp"] < cut], data.items, end=cut)
    test = data.events[(data.events["timestamp"] >= cut) & data.events["user_id"].isin(train.user_index)]
    test = test[test["item_id"].isin(train.item_index)]
    users = np.array(sorted(test["user_id"].unique()), dtype=object)
    grouped = test.groupby("user_id")["item_id"].agg(lambda s: {train.item_index[i] for i in s})
    return HoldoutSplit(train, users, [grouped[u] for u in users])


def top_items(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, best first."""
    part = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def evaluate_scores(split: HoldoutSplit, scores: np.ndarray, k: int = 10) -> dict[str, dict[str, float]]:
    """Metrics per view for a (test users x items) score matrix."""
    train = split.train
    bought = train.bought[split.user_rows]
    item_popularity = np.asarray(train.bought.sum(axis=0)).ravel()
    self_information = -np.log2(np.maximum(item_popularity, 1) / train.n_users)
    results = {}
    for view in VIEWS:
        view_scores = scores.astype(np.float64, copy=True)
        if view == "NEW":
            view_scores[bought.nonzero()] = -np.inf
        lists = top_items(view_scores, k)
        sums = dict.fromkeys(METRICS, 0.0)
        counted = 0
        for n, relevant in enumerate(split.relevant):
            if view == "NEW":
                relevant = relevant - set(bought[n].indices)
            if not relevant:
                continue
            ranked = lists[n].tolist()
            counted += 1
            sums["precision"] += precision_at_k(ranked, relevant, k)
            sums["recall"] += recall_at_k(ranked, relevant, k)
            sums["map"] += average_precision_at_k(ranked, relevant, k)
            sums["ndcg"] += ndcg_at_k(ranked, relevant, k)
        view_result = {name: total / max(counted, 1) for name, total in sums.items()}
        view_result["coverage"] = len(np.unique(lists)) / train.n_items
        view_result["novelty"] = float(self_information[lists].mean())
        view_result["users"] = counted
        results[view] = view_result
    return results
