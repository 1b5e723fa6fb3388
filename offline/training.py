"""Training and evaluating every model on a purchase history.

``train_models`` picks the validation protocol that fits the data, tunes and
scores every component and the hybrid on the validation split and two earlier
periods cut the same way (``offline.selection``), lets the guard
choose what each list publishes, and refits the kept models on the whole
history. ``evaluate_all`` holds out a test part first (the protocol of the
caller's choice), trains on the rest exactly as publishing would, and scores
every model and the published lists on the held-out part.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Collection

import pandas as pd

from models.base import BatchRecommender
from models.compiled_ranker import compile_ahead
from models.hybrid import LearnedHybrid
from models.interactions import Interactions
from models.segments import CustomerSegmentation, customer_features
from offline.components import LARGE_HISTORY, SPECS, ComponentSpec
from offline.evaluation import HoldoutSplit, default_cut, evaluate_lists, model_lists, split_by
from offline.retail_history import HistoryError
from offline.selection import (K, PER_MODEL, Selection, failure_reason, fitted_or_failure, guard, ranker_objectives,
                               select_components, validate_hybrid)
from offline.threads import on_every_core
from offline.validation import HOLDS_OUT, resolve_protocol, validation_split

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
VALIDATION_USERS = 8000  # customers scored on validation; enough to rank models, bounded in time
EARLIER_SPLITS = 2  # periods cut before the validation period: models are scored on all of them
LISTS = {"ALL": "recs", "NEW": "discover"}
# K-Means needs more customers than its smallest number of segments.
MIN_CUSTOMERS = min(CustomerSegmentation().k_range) + 1


def item_catalog(history: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """item_id-indexed text, category and price: the items file where given, else derived from order lines."""
    # Each item's most frequent description (ties: the first met), and its median price.
    counts = history.groupby(["item_id", "description"], sort=False).size().rename("n").reset_index()
    text = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("item_id")
    derived = pd.DataFrame({"text": text.set_index("item_id")["description"],
                            "price": history.groupby("item_id")["price"].median()})
    if items is None or items.empty:
        return derived
    return items.set_index("item_id").combine_first(derived)


def interactions(history: pd.DataFrame, items: pd.DataFrame | None = None) -> Interactions:
    return Interactions.from_frame(history, item_catalog(history, items))


@dataclass
class TrainedModels:
    data: Interactions
    segmentation: CustomerSegmentation
    selection: Selection
    components: dict[str, BatchRecommender]
    hybrid: LearnedHybrid | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def published(self, view: str) -> BatchRecommender:
        """The model the guard chose for the list of ``view`` (ALL: recs, NEW: discover)."""
        name = self.selection.published[view]
        return self.hybrid if name == "hybrid" else self.components[name]


def train_all(history: pd.DataFrame, items: pd.DataFrame | None = None, progress: Progress = print,
              protocol: str | None = None) -> TrainedModels:
    return train_models(interactions(history, items), progress, protocol)


def train_models(data: Interactions, progress: Progress = print, protocol: str | None = None) -> TrainedModels:
    check_history_size(data.n_users, data.n_items, len(data.events), progress)
    # The customers' features are computed beside the model selection, which leaves a core idle
    # much of the time (at 10M order lines, segmenting took 34 s on one core, most of it these).
    # Clustering them waits for the models: K-Means sets the process's BLAS thread count, on
    # which EASE's solution depends in its last bits.
    with ThreadPoolExecutor(1) as beside:
        described = beside.submit(customer_features, data)
        selection, components, hybrid, seconds = _select_and_fit(data, progress, protocol)
        features = described.result()
    started = time.monotonic()
    segmentation = CustomerSegmentation().fit_features(features)
    seconds["segmentation"] = round(time.monotonic() - started, 1)
    progress(f"segments: k={segmentation.k} by silhouette ({seconds['segmentation']:.1f} s)")
    return TrainedModels(data, segmentation, selection, components, hybrid, seconds)


def check_history_size(customers: int, items: int, order_lines: int, progress: Progress) -> None:
    """Say how large the history is; a HistoryError where it has too few customers to train on."""
    progress(f"history: {customers:,} customers, {items:,} items, {order_lines:,} order lines")
    if customers < MIN_CUSTOMERS:
        raise HistoryError(f"the history has {customers} customer{'s' * (customers != 1)}; "
                           f"training needs at least {MIN_CUSTOMERS} to segment them and validate on")


def _select_and_fit(data: Interactions, progress: Progress, protocol: str | None
                    ) -> tuple[Selection, dict[str, BatchRecommender], LearnedHybrid | None, dict[str, float]]:
    """What validation chose, the kept models fitted on the whole history, and each step's seconds."""
    chosen = choose_models(data, progress, protocol)
    selection, capabilities, rankers, seconds = chosen.selection, chosen.capabilities, chosen.rankers, chosen.seconds
    clock = Clock(seconds)
    components, rankers = _fit_kept(selection, capabilities, rankers, data, progress)
    hybrid = LearnedHybrid(list(components.values()), rankers, PER_MODEL, data) if rankers else None
    clock("final fit")
    report_choices(selection, progress)
    progress(f"fitted {', '.join(components)} on the whole history ({seconds['final fit']:.1f} s)")
    return selection, components, hybrid, seconds


@dataclass
class Choice:
    """What validation chose before the final fit: the guard's selection, each validated
    component's capabilities, the hybrid's rankers (None where it was left out), and the seconds
    each step took."""

    selection: Selection
    capabilities: dict[str, frozenset]
    rankers: dict | None
    seconds: dict[str, float]
    members: list[str]  # the hybrid's components, in the order of its rankers' features


def choose_models(data: Interactions, progress: Progress, protocol: str | None,
                  specs: tuple[ComponentSpec, ...] | None = None, members: Collection[str] | None = None,
                  left_out: dict[str, str] | None = None) -> Choice:
    """The validation protocol chosen from ``data``, every component of ``specs`` and the hybrid of
    ``members`` (default: all of them) scored on its periods, and the guard's choice of what each
    list publishes. ``left_out``: components not tried, and why (the manifest says so). Both
    engines choose with it."""
    seconds: dict[str, float] = {}
    clock = Clock(seconds)
    chosen = resolve_protocol(data.events, protocol)
    # On a large history every choice is made on a random share of customers: model rankings
    # hold on a sample, and each validation fit then costs what a mid-sized shop's would.
    split = validation_split(data.customer_sample(LARGE_HISTORY), chosen.name).sample(VALIDATION_USERS)
    if len(split.test_users) == 0:
        raise HistoryError(f"the {chosen.name} validation split leaves no customer to validate on: "
                           f"it needs {HOLDS_OUT[chosen.name]}, holding out items that the rest of the history has")
    selection = Selection(chosen.name, chosen.reason, len(split.test_users))
    progress(f"validation: {chosen.name} ({chosen.reason}); {len(split.test_users):,} customers")
    for name, reason in (left_out or {}).items():
        selection.dropped[name] = reason
        progress(f"  {name} left out: {reason}")
    periods, fitted = select_components([split, *_earlier_periods(split, chosen.name)], selection, progress, data,
                                        specs)
    clock("components")
    in_hybrid = [{name: model for name, model in period.items() if members is None or name in members}
                 for period in fitted]
    try:
        rankers = validate_hybrid(periods, in_hybrid, selection, ranker_objectives(len(data.events)))
        scored = "each period ranked by the mean of the other periods' rankers" if len(periods) > 1 else "out of fold"
        views = map(partial(_hybrid_score, selection), selection.ranker_objective)
        progress(f"  hybrid ({scored}): " + " ".join(views))
    except ValueError as exc:
        rankers = None
        selection.dropped["hybrid"] = str(exc)
        progress(f"  hybrid left out: {exc}")
    clock("hybrid validation")
    capabilities = {name: model.capabilities for name, model in fitted[0].items()}
    guard(selection, capabilities)
    return Choice(selection, capabilities, rankers, seconds, list(in_hybrid[0]))


def report_choices(selection: Selection, progress: Progress) -> None:
    for view, reason in selection.reasons.items():
        progress(f"{LISTS[view]} list: {selection.published[view]} ({reason})")


def _fit_kept(selection: Selection, capabilities: dict[str, frozenset], rankers: dict | None, data: Interactions,
              progress: Progress) -> tuple[dict[str, BatchRecommender], dict | None]:
    """The kept components fitted on the whole history, and the hybrid's rankers. A component
    that fitted on every validation period may still fail on the whole history (a similarity
    undefined on it): it is left out, and the hybrid with it, whose rankers read its scores; the
    guard then chooses again among the models left."""
    with ThreadPoolExecutor(1) as beside:
        # The published rankers compile on LLVM while the components refit, rather than when the
        # export first scores candidates: there, a core would wait (6 s at 1M order lines).
        beside.submit(compile_ahead, [ranker for view, name in selection.published.items()
                                      if name == "hybrid" for ranker in rankers[view]])
        final, failed = fit_components([SPECS[name].build(selection.params[name]) for name in capabilities], data)
    if "popularity" in failed:
        raise HistoryError(f"popularity cannot fit the whole history: {failed['popularity']}")
    for name, reason in failed.items():
        progress(f"component {name} left out: it cannot fit the whole history: {reason}")
        selection.leave_out(name, f"cannot fit the whole history: {reason}")
    if failed:
        if rankers:
            selection.leave_out("hybrid", f"its component {', '.join(failed)} cannot fit the whole history")
        rankers = None
        guard(selection, capabilities)
    return {component.name: component for component in final}, rankers


def _hybrid_score(selection: Selection, view: str) -> str:
    """The hybrid's validation score in ``view``, with the objective its rankers kept and both objectives' scores."""
    tried = ", ".join(f"{objective} {score:.4f}" for objective, score in selection.objective_scores[view].items())
    return f"{view} {selection.scores['hybrid'][view]:.4f} ({selection.ranker_objective[view]} ranker; {tried})"


def fit_components(models: list[BatchRecommender], data: Interactions
                   ) -> tuple[list[BatchRecommender], dict[str, str]]:
    """``models`` fitted on ``data``, in their order, and why each that could not fit failed (by
    name): those whose fit runs on one core side by side, one per core, then those that use
    every core by themselves, one after another."""
    fit = partial(fitted_or_failure, data=data)
    one_core = [model for model in models if not model.fits_on_every_core]
    fitted = dict(zip(map(id, one_core), on_every_core(fit, one_core)))
    results = [fitted[id(model)] if id(model) in fitted else fit(model) for model in models]
    failed = {model.name: failure_reason(result)
              for model, result in zip(models, results) if isinstance(result, Exception)}
    return [result for result in results if not isinstance(result, Exception)], failed


def _earlier_periods(split: HoldoutSplit, protocol: str, count: int = EARLIER_SPLITS) -> list[HoldoutSplit]:
    """The same protocol applied ``count`` more times, each to what precedes the previous part."""
    earlier, part = [], split
    for seed in range(1, count + 1):
        part = validation_split(part.train, protocol).sample(VALIDATION_USERS, seed=seed)
        if len(part.test_users) == 0:
            break
        earlier.append(part)
    return earlier


class Clock:
    """Records the seconds since the previous step under each step's name."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds
        self.last = time.monotonic()

    def __call__(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = round(now - self.last, 1)
        self.last = now


@dataclass
class EvaluationReport:
    protocol: str
    description: str
    train_users: int
    train_items: int
    test_users: int
    selection: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # one per model: name, kind, ALL{...}, NEW{...}

    def table(self, metrics=("precision", "recall", "map", "ndcg", "coverage", "novelty")) -> list[list[str]]:
        out = []
        for row in self.rows:
            cells = [row["model"], row["kind"]]
            for view in ("ALL", "NEW"):
                cells += [f"{row[view][m]:.4f}" for m in metrics]
            out.append(cells)
        return out


def test_split(data: Interactions, protocol: str = "global-time", cut: pd.Timestamp | None = None) -> HoldoutSplit:
    """The held-out test part of ``data`` under ``protocol`` (global-time: from ``cut``, default the last 30 days)."""
    return split_by(data, protocol, cut if cut is not None else default_cut(data.events))


def evaluate_all(history: pd.DataFrame, items: pd.DataFrame | None = None, cut: pd.Timestamp | None = None,
                 k: int = K, progress: Progress = print, protocol: str = "global-time") -> EvaluationReport:
    split = test_split(interactions(history, items), protocol, cut)
    if len(split.test_users) == 0:
        raise ValueError(f"the {protocol} test split leaves no customer to test on; choose another cut or protocol")
    description = f"test from {split.train.end:%Y-%m-%d}" if protocol == "global-time" else f"{protocol} per customer"
    report = EvaluationReport(protocol, description, split.train.n_users, split.train.n_items, len(split.test_users))
    progress(f"test split ({description}): {report.train_users:,} train customers, {report.train_items:,} items, "
             f"{report.test_users:,} test customers")
    trained = train_models(split.train, progress)
    report.selection = trained.selection.as_dict()
    popularity = trained.components["popularity"]

    def record(name: str, kind: str, lists: dict) -> None:
        result = evaluate_lists(split, lists, k)
        report.rows.append({"model": name, "kind": kind, **result})
        progress(f"{name:<28} ALL MAP@{k} {result['ALL']['map']:.4f}  NEW MAP@{k} {result['NEW']['map']:.4f}")

    for name, model in trained.components.items():
        record(name, "component", model_lists(model, split, k, popularity))
    if trained.hybrid is not None:
        record("hybrid", "hybrid", model_lists(trained.hybrid, split, k, popularity))
    recs = model_lists(trained.published("ALL"), split, k, popularity)
    discover = model_lists(trained.published("NEW"), split, k, popularity)
    recs_view = "NEW" if trained.selection.recs_unbought else "ALL"
    record("published (recs / discover)", "published", {"ALL": recs[recs_view], "NEW": discover["NEW"]})
    return report
