"""The hybrid: every component model's opinion, blended by a learned ranker.

How the blend is learned, without looking at the test period: the training
history is cut into ``windows`` consecutive periods of ``window_days`` at its
end. For each period the components are fitted on what came before it, each
customer's candidates are scored, and the label says whether the customer
bought the candidate during the period. A gradient-boosted classifier learns
from all periods how much to trust each component, together with repeat
signals (how often and how long ago the customer bought the item) and item
and customer traits. Finally the components are refitted on the whole history.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.ensemble import HistGradientBoostingClassifier

from models.base import BatchRecommender
from models.interactions import Interactions

log = logging.getLogger(__name__)

NEVER = 9999.0  # "days since last purchase" for items the customer never bought
ComponentFactory = Callable[[], Sequence[BatchRecommender]]


class LearnedHybrid(BatchRecommender):
    name = "hybrid"

    def __init__(self, components: ComponentFactory, windows: int = 3, window_days: int = 30,
                 candidates_per_model: int = 50, negative_sample: float = 0.5, max_iter: int = 200, seed: int = 0,
                 n_jobs: int = 2, progress: Callable[[str], None] | None = None):
        self.make_components = components
        self.windows = windows
        self.window_days = window_days
        self.candidates_per_model = candidates_per_model
        self.negative_sample = negative_sample
        self.max_iter = max_iter
        self.seed = seed
        self.n_jobs = n_jobs
        self.progress = progress or (lambda step: None)

    def fit(self, data: Interactions) -> "LearnedHybrid":
        periods = []
        for k in range(self.windows, 0, -1):
            start = data.end - pd.Timedelta(days=k * self.window_days)
            stop = start + pd.Timedelta(days=self.window_days)
            future = data.events[(data.events["timestamp"] >= start) & (data.events["timestamp"] < stop)]
            periods.append((data.until(start), future))
        self.progress(f"fitting components on {len(periods)} training windows and the whole history")
        # Windows and the final fit are independent: spread them over the cores.
        jobs = [delayed(_window_examples)(self.make_components, self.candidates_per_model, past, future)
                for past, future in periods]
        jobs.append(delayed(_fit_all)(self.make_components, data))
        *examples, self.components = Parallel(n_jobs=self.n_jobs)(jobs)
        examples = [e for e in examples if e is not None]
        if not examples:
            raise ValueError("the history is too short to cut a single training window for the hybrid")
        X = np.vstack([x for x, _ in examples])
        y = np.concatenate([labels for _, labels in examples])
        # Most candidates are not bought; a sample of them teaches the ranker as much, faster.
        rng = np.random.default_rng(self.seed)
        keep = y | (rng.random(len(y)) < self.negative_sample)
        X, y = X[keep], y[keep]
        self.progress(f"ranker: {len(y):,} candidates, {y.mean():.1%} bought")
        self.examples = (X, y)
        self.ranker = self._new_ranker().fit(X, y)
        self.data = data
        return self

    def _new_ranker(self) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=self.max_iter, learning_rate=0.05, max_leaf_nodes=31,
                                              l2_regularization=1.0, random_state=self.seed)

    def without(self, component_name: str) -> "LearnedHybrid":
        """The same hybrid with one component left out of candidates and features, its
        ranker retrained on the same examples (an ablation that needs no refitting)."""
        position = [c.name for c in self.components].index(component_name)
        keep = [j for j in range(self.examples[0].shape[1]) if j not in (2 * position, 2 * position + 1)]
        reduced = copy.copy(self)
        reduced.components = [c for c in self.components if c.name != component_name]
        reduced.examples = (self.examples[0][:, keep], self.examples[1])
        reduced.ranker = self._new_ranker().fit(*reduced.examples)
        return reduced

    @property
    def feature_names(self) -> list[str]:
        names = []
        for component in self.components:
            names += [component.name, f"{component.name}_share"]
        return names + ["orders", "orders_share", "days_since", "due", "item_repeat_rate", "item_buyers",
                        "user_orders", "user_idle_days"]

    def score(self, user_rows) -> np.ndarray:
        """Ranker probabilities for candidates; -1 for items no component proposed."""
        user_rows = np.asarray(user_rows)
        scores = np.full((len(user_rows), self.data.n_items), -1.0)
        for chunk in _chunks(len(user_rows)):
            features, candidates = candidate_features(self.data, self.components, user_rows[chunk],
                                                      self.candidates_per_model)
            r, c = np.nonzero(candidates)
            block = scores[chunk]
            block[r, c] = self.ranker.predict_proba(features[r, c])[:, 1]
            scores[chunk] = block
        return scores



def candidate_features(data: Interactions, components, rows: np.ndarray, per_model: int):
    """(users x items x features) and the candidate mask (users x items): items the
    user bought before, plus each component's ``per_model`` best."""
    n, m = len(rows), data.n_items
    columns: list[np.ndarray] = []
    candidates = data.bought[rows].toarray() > 0
    take = min(per_model, m - 1)
    for component in components:
        s = np.asarray(component.score(rows), dtype=np.float32)
        top = np.argpartition(-s, take, axis=1)[:, :take]
        np.put_along_axis(candidates, top, True, axis=1)
        peak = np.abs(s).max(axis=1, keepdims=True)
        columns += [s, s / np.where(peak > 0, peak, 1.0)]
    traits = _traits(data)
    orders = data.orders[rows].toarray()
    age = data.last_age_days[rows].toarray()
    days_since = np.where(age > 0, age - 1.0, NEVER)
    user_orders, idle, gap = (traits[name][rows][:, None] for name in ("user_orders", "user_idle", "user_gap"))
    columns += [
        orders,
        orders / np.maximum(user_orders, 1.0),
        days_since,
        days_since / np.maximum(gap, 1.0),
        np.broadcast_to(traits["item_repeat_rate"], (n, m)),
        np.broadcast_to(traits["item_buyers"], (n, m)),
        np.broadcast_to(user_orders, (n, m)),
        np.broadcast_to(idle, (n, m)),
    ]
    return np.stack(columns, axis=2).astype(np.float32), candidates


def _fit_all(make_components: ComponentFactory, data: Interactions) -> list[BatchRecommender]:
    return [component.fit(data) for component in make_components()]


def _window_examples(make_components: ComponentFactory, per_model: int, past: Interactions, future: pd.DataFrame):
    """Candidate features (rows) and whether each was bought in ``future``."""
    future = future[future["user_id"].isin(past.user_index)]
    users = np.array(sorted(future["user_id"].unique()), dtype=object)
    if past.n_users == 0 or len(users) == 0:
        return None
    components = _fit_all(make_components, past)
    bought = np.zeros((len(users), past.n_items), dtype=bool)
    user_pos = pd.Series(np.arange(len(users)), index=users)[future["user_id"]].to_numpy()
    bought[user_pos, future["item_id"].map(past.item_index).to_numpy()] = True
    blocks, labels = [], []
    for chunk in _chunks(len(users)):
        features, candidates = candidate_features(past, components, past.rows(users[chunk]), per_model)
        r, c = np.nonzero(candidates)
        blocks.append(features[r, c])
        labels.append(bought[chunk][r, c])
    return np.vstack(blocks), np.concatenate(labels)


def _chunks(n: int, size: int = 256):
    """Slices of at most ``size`` users, so the feature tensor stays small."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _traits(data: Interactions) -> dict[str, np.ndarray]:
    """Per-item and per-customer traits that tell repeat buying from one-off buying."""
    return data.cached("hybrid-traits", lambda: _compute_traits(data))


def _compute_traits(data: Interactions) -> dict[str, np.ndarray]:
    bought = data.bought
    buyers = np.asarray(bought.sum(axis=0)).ravel()
    repeaters = np.asarray((data.orders > 1).sum(axis=0)).ravel()
    per_user = data.events.groupby("user_id").agg(orders=("order_id", "nunique"), first=("timestamp", "min"),
                                                  last=("timestamp", "max")).reindex(data.user_ids)
    span = (per_user["last"] - per_user["first"]).dt.total_seconds().to_numpy() / 86400
    user_orders = per_user["orders"].to_numpy(dtype=np.float64)
    return {
        "item_repeat_rate": (repeaters + 1) / (buyers + 5),  # smoothed towards 0.2 for rarely bought items
        "item_buyers": buyers / max(data.n_users, 1),
        "user_orders": user_orders,
        "user_idle": (data.end - per_user["last"]).dt.total_seconds().to_numpy() / 86400,
        "user_gap": span / np.maximum(user_orders - 1, 1),
    }
