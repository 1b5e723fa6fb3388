"""Training and evaluating every model on a purchase history.

``train_all`` fits the hybrid (and with it every component) plus the customer
segmentation on the whole history, for publishing. ``evaluate_all`` runs the
temporal-holdout protocol of ``offline.evaluation`` on each component, the
hybrid, and the hybrid without each component (ablation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from models.base import BatchRecommender
from models.content import ContentSimilarity
from models.cooccurrence import ItemCooccurrence
from models.ease import EASE
from models.hybrid import LearnedHybrid
from models.interactions import Interactions
from models.popularity import RecentPopularity
from models.repeat_purchase import RepeatPurchase
from models.segments import CustomerSegmentation
from models.surprise_cf import SurpriseItemKNN, SurpriseSVD
from offline.evaluation import default_cut, evaluate_scores, holdout_split

Progress = Callable[[str], None]
COMPONENT_NAMES = ["repeat", "popularity", "segment-popularity", "cooccurrence", "ease", "content",
                   "surprise-knn", "surprise-svd"]


def make_component(name: str) -> BatchRecommender:
    return {
        "repeat": lambda: RepeatPurchase(half_life_days=90),
        "popularity": lambda: RecentPopularity(window_days=30),
        "segment-popularity": lambda: RecentPopularity(window_days=30, segmenter=CustomerSegmentation()),
        "cooccurrence": lambda: ItemCooccurrence(history_half_life_days=30),
        "ease": lambda: EASE(l2=200),
        "content": lambda: ContentSimilarity(),
        "surprise-knn": lambda: SurpriseItemKNN("pearson_baseline"),
        "surprise-svd": lambda: SurpriseSVD(n_factors=32, n_epochs=20, lr_all=0.03),
    }[name]()


@dataclass(frozen=True)
class Components:
    """A picklable factory of the hybrid's components (the hybrid fits them in worker processes)."""

    names: tuple[str, ...] = tuple(COMPONENT_NAMES)

    def __call__(self) -> list[BatchRecommender]:
        return [make_component(name) for name in self.names]


def item_catalog(history: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """item_id-indexed text, category and price: the items file where given, else derived from order lines."""
    grouped = history.groupby("item_id")
    derived = pd.DataFrame({
        "text": grouped["description"].agg(lambda s: s.mode().iat[0] if not s.mode().empty else ""),
        "price": grouped["price"].median(),
    })
    if items is None or items.empty:
        return derived
    return items.set_index("item_id").combine_first(derived)


def interactions(history: pd.DataFrame, items: pd.DataFrame | None = None) -> Interactions:
    return Interactions.from_frame(history, item_catalog(history, items))


@dataclass
class TrainedModels:
    data: Interactions
    hybrid: LearnedHybrid
    segmentation: CustomerSegmentation
    seconds: dict[str, float] = field(default_factory=dict)


def train_all(history: pd.DataFrame, items: pd.DataFrame | None = None, progress: Progress = print) -> TrainedModels:
    seconds: dict[str, float] = {}
    started = time.monotonic()
    data = interactions(history, items)
    progress(f"history: {data.n_users:,} customers, {data.n_items:,} items, {len(data.events):,} order lines")
    segmentation = CustomerSegmentation().fit(data)
    seconds["segmentation"] = time.monotonic() - started
    progress(f"segments: k={segmentation.k} by silhouette ({seconds['segmentation']:.1f} s)")
    hybrid = LearnedHybrid(Components(), progress=progress).fit(data)
    seconds["hybrid"] = time.monotonic() - started - seconds["segmentation"]
    return TrainedModels(data, hybrid, segmentation, seconds)


@dataclass
class EvaluationReport:
    cut: pd.Timestamp
    train_users: int
    train_items: int
    test_users: int
    rows: list[dict] = field(default_factory=list)  # one per model: name, kind, ALL{...}, NEW{...}

    def table(self, metrics=("precision", "recall", "map", "ndcg", "coverage", "novelty")) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = [row["model"], row["kind"]]
            for view in ("ALL", "NEW"):
                cells += [f"{row[view][m]:.4f}" for m in metrics]
            out.append(cells)
        return out


def evaluate_all(history: pd.DataFrame, items: pd.DataFrame | None = None, cut: pd.Timestamp | None = None,
                 k: int = 10, ablation: bool = True, progress: Progress = print) -> EvaluationReport:
    data = interactions(history, items)
    cut = cut if cut is not None else default_cut(data.events)
    split = holdout_split(data, cut)
    if len(split.test_users) == 0:
        raise ValueError(f"no customer bought both before and after {cut:%Y-%m-%d}; choose another cut")
    report = EvaluationReport(cut, split.train.n_users, split.train.n_items, len(split.test_users))
    progress(f"holdout at {cut:%Y-%m-%d}: {report.train_users:,} train customers, {report.train_items:,} items, "
             f"{report.test_users:,} test customers")
    rows = split.user_rows

    def record(name: str, kind: str, scores: np.ndarray, seconds: float) -> None:
        result = evaluate_scores(split, scores, k)
        report.rows.append({"model": name, "kind": kind, "seconds": round(seconds, 1), **result})
        progress(f"{name:<28} ALL MAP@{k} {result['ALL']['map']:.4f}  NEW MAP@{k} {result['NEW']['map']:.4f}"
                 f"  ({seconds:.1f} s)")

    for name in COMPONENT_NAMES:
        started = time.monotonic()
        model = make_component(name).fit(split.train)
        record(name, "component", model.score(rows), time.monotonic() - started)
    started = time.monotonic()
    hybrid = LearnedHybrid(Components(), progress=progress).fit(split.train)
    record("hybrid", "hybrid", hybrid.score(rows), time.monotonic() - started)
    if ablation:
        for name in COMPONENT_NAMES:
            started = time.monotonic()
            reduced = hybrid.without(name)
            record(f"hybrid - {name}", "ablation", reduced.score(rows), time.monotonic() - started)
    return report
