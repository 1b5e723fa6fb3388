"""The hybrid: every component's opinion on a customer's candidates, blended by a learned ranker.

Candidates are each component's ``per_model`` best items for the customer. A
candidate's features are each component's score and rank for it, and the score
relative to the customer's best from that component; how many components propose
it and their reciprocal-rank fusion; repeat signals (how often and how long ago the
customer bought it), item and customer traits, and the customer's share of their
items in the candidate's category. Gradient-boosted rankers,
one per view and held-out period, learn from labelled candidates (did the customer
buy it in that period?) how much to trust each component, never against the order of a
component's own ranking (``evidence_constraints``); their scores are averaged, so
that no one period's peculiarities decide. Each view's rankers learn with the objective that
validation chose for it (``OBJECTIVES``). The ``ALL`` view ranks every
candidate; the ``NEW`` view (discovery) ranks only items the customer never bought.

Where the labelled candidates come from (a validation split that mirrors how the
data is used) is the trainer's business: see ``offline.validation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightgbm import LGBMClassifier, LGBMModel, LGBMRanker

from models.base import BatchRecommender, ScoreBlock, SparseBlock, TopN, openmp_threads
from models.compiled_ranker import relevance
from models.interactions import Interactions
from models.item_categories import catalog_categories

NEVER = 9999.0  # "days since last purchase" for items the customer never bought
VIEWS = ("ALL", "NEW")
COLUMNS_PER_COMPONENT = 3  # score, rank, score relative to the customer's best
CANDIDATES_PER_SLOT = 1  # a list of n ranks each component's best n items
TRAINING_ROWS = 200_000  # labelled candidates a ranker learns from, unbought ones sampled down
# How a ranker learns from labelled candidates: to tell bought from unbought ones across all
# customers (a classifier), or to order each customer's candidates (LightGBM's listwise
# cross-entropy surrogate of NDCG). Neither wins on every shop's validation: on Online Retail the
# listwise ranker's discovery lists scored 2-4% higher, on the simulator and Book-Crossing the
# classifier's 1-3%; the trainer tries both for each view.
OBJECTIVES = ("binary", "rank_xendcg")


@dataclass
class Candidates:
    """(block row, item column) pairs with their features; ``labels`` when known."""

    positions: np.ndarray
    cols: np.ndarray
    features: np.ndarray
    labels: np.ndarray | None = None

    # Both carry the labels: only validation's labelled candidates are joined or cut.
    @staticmethod
    def joined(parts: list["Candidates"]) -> "Candidates":
        return Candidates(*(np.concatenate([getattr(part, name) for part in parts])
                            for name in ("positions", "cols", "features", "labels")))

    def subset(self, mask: np.ndarray) -> "Candidates":
        return Candidates(self.positions[mask], self.cols[mask], self.features[mask], self.labels[mask])


AGREEMENT = ["votes", "rank_fusion"]  # how far the components agree on a candidate
TRAITS = ["orders", "days_since", "due", "item_repeat_rate", "item_buyers", "user_orders", "user_idle_days",
          "user_items", "category_share"]


def feature_names(components: list[BatchRecommender]) -> list[str]:
    names = []
    for component in components:
        names += [component.name, f"{component.name}_rank", f"{component.name}_relative"]
    return names + AGREEMENT + TRAITS


class ComponentScores:
    """The components' scores for the customers at ``rows``: their blocks, and each one's
    ``per_model`` best items in both views (NEW: never-bought items only), ranked once for both."""

    def __init__(self, data: Interactions, components: list[BatchRecommender], rows: np.ndarray, per_model: int):
        self.data = data
        self.components = components
        self.rows = rows
        self.per_model = per_model
        self.blocks = [component.block(rows) for component in components]
        self._tops: dict[str, list[TopN]] = {}

    def tops(self, view: str) -> list[TopN]:
        if not self._tops:
            exclude = self.data.bought[self.rows]
            both = [component.top_n_views(block, self.rows, self.per_model, exclude)
                    for component, block in zip(self.components, self.blocks)]
            self._tops = {"ALL": [every for every, _ in both], "NEW": [new for _, new in both]}
        return self._tops[view]


def candidates(scores: ComponentScores, view: str, keep: int | None = None) -> Candidates:
    """Each component's ``per_model`` best items in ``view`` for the customers of ``scores``,
    with their features; only each one's ``keep`` best when given (the ranks stay those among
    ``per_model``)."""
    data, per_model = scores.data, scores.per_model
    tops = scores.tops(view)
    tops_kept = [TopN(top.items[:, :keep], top.scores[:, :keep]) for top in tops] if keep else tops
    keys = np.sort(np.concatenate([_keys(top, data.n_items)[0] for top in tops_kept]))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys
    positions, cols = keys // data.n_items, keys % data.n_items
    # Filled column by column: no float64 copy of millions of rows, nor a list of their columns.
    features = np.empty((len(cols), len(feature_names(scores.components))), dtype=np.float32)
    for n, (block, top, best) in enumerate(zip(scores.blocks, tops, scores.tops("ALL"))):
        at = COLUMNS_PER_COMPONENT * n
        features[:, at] = block.at(positions, cols)
        features[:, at + 1] = _rank(top, positions, cols, data.n_items, per_model)
        features[:, at + 2] = features[:, at] / _scale(best)[positions]
    tail = _agreement(component_ranks(features, len(tops)), per_model)
    tail += _pair_traits(data, scores.rows, positions, cols)
    for n, column in enumerate(tail, start=COLUMNS_PER_COMPONENT * len(tops)):
        features[:, n] = column
    return Candidates(positions, cols, features)


def component_ranks(features: np.ndarray, n_components: int) -> np.ndarray:
    """The components' rank columns of candidate ``features``."""
    return features[:, 1:COLUMNS_PER_COMPONENT * n_components:COLUMNS_PER_COMPONENT]


def labelled(found: Candidates, relevant: list[set[int]]) -> Candidates:
    """``found`` with labels: was the pair's item among its user's ``relevant`` columns."""
    wanted = np.array([p * (1 << 32) + c for p, items in enumerate(relevant) for c in items], dtype=np.int64)
    found.labels = np.isin(found.positions.astype(np.int64) * (1 << 32) + found.cols, wanted)
    return found


def evidence_constraints(components: list[BatchRecommender]) -> list[int]:
    """LightGBM's monotone constraints for the features of ``feature_names(components)``: a
    candidate's chance of being bought may only rise as a component ranks it higher, as more
    components propose it, and as the score rises of a component that scores every customer's
    items alike (popularity). Periods differ (a holiday's best sellers are not the next month's),
    and unconstrained trees learn one period's bumps along these features, which mislead in the
    weeks after it. A personal component's raw score is left free: its scale changes from one
    customer to the next (with the length of their history), so more is not better across them."""
    constraints = []
    for component in components:
        alike = int("personal" not in component.capabilities)
        constraints += [alike, -1, alike]  # score, rank (0 = best), score relative to the customer's best
    # Of the traits, only the customer's share of their items in the candidate's category is evidence.
    return constraints + [1] * len(AGREEMENT) + [int(trait == "category_share") for trait in TRAITS]


def new_ranker(seed: int = 0, monotone: list[int] | None = None, objective: str = "binary") -> LGBMModel:
    # Small trees, learned slowly: the ranker must carry over from the periods it learned on
    # to the weeks after training, not fit any one of them closely. LightGBM rather than
    # scikit-learn's histogram boosting with the same settings: it ranks the millions of
    # candidates of an export in about half the time, for lists within a few percent either way
    # (README, "Measured"). Row-wise histograms and
    # deterministic mode: the same data gives the same ranker on every run (LightGBM otherwise
    # picks its layout by timing it). Candidates are scored by its trees compiled to machine
    # code (``models.compiled_ranker``).
    settings = dict(n_estimators=100, learning_rate=0.05, num_leaves=15, reg_lambda=1.0, min_child_samples=20,
                    monotone_constraints=monotone, random_state=seed, deterministic=True, force_row_wise=True,
                    verbose=-1)
    return LGBMClassifier(**settings) if objective == "binary" else LGBMRanker(objective=objective, **settings)


class RankerSample:
    """Labelled candidates kept to learn a ranker from, chunk by chunk: every bought one, and the
    others whose uniform draw is under ``bound``. The bound falls as candidates come, to the
    share of them ``fit_ranker`` keeps at most, so a period's candidates are never held whole
    (at 1M order lines, three periods' were the trainer's peak memory)."""

    def __init__(self, seed: int | list[int] = 0):
        self.rng = np.random.default_rng(seed)
        self.kept: list[tuple[Candidates, np.ndarray]] = []  # candidates and their draws
        self.negatives = 0  # unbought candidates seen, kept or not

    @property
    def bound(self) -> float:
        return min(1.0, TRAINING_ROWS / max(self.negatives, 1))

    def add(self, found: Candidates) -> None:
        draws = self.rng.random(len(found.labels))
        self.negatives += _unbought(found)
        self.kept = [_drawn(part, part_draws, self.bound) for part, part_draws in [*self.kept, (found, draws)]]

    def where(self, wanted: Callable[[Candidates], np.ndarray]) -> "RankerSample":
        """The candidates for which ``wanted`` holds; their unbought ones seen are estimated from those kept."""
        part = RankerSample()
        for found, draws in self.kept:
            mask = wanted(found)
            part.kept.append((found.subset(mask), draws[mask]))
        part.negatives = round(sum(_unbought(found) for found, _ in part.kept) / self.bound)
        return part


def _unbought(found: Candidates) -> int:
    return int(len(found.labels) - found.labels.sum())


def _drawn(found: Candidates, draws: np.ndarray, bound: float) -> tuple[Candidates, np.ndarray]:
    keep = found.labels | (draws < bound)
    return (found, draws) if keep.all() else (found.subset(keep), draws[keep])


def fit_ranker(sample: RankerSample, monotone: list[int], seed: int = 0, objective: str = "binary") -> LGBMModel:
    """A ranker on the labelled candidates of ``sample`` (see ``training_candidates``), under the
    ``monotone`` constraints of ``evidence_constraints``, learning with ``objective``."""
    found = training_candidates(sample)
    if found.labels.all() or not found.labels.any():
        raise ValueError("the validation period gives no bought and unbought candidates to learn from")
    ranker = new_ranker(seed, monotone, objective)
    if objective == "binary":
        return ranker.fit(found.features, found.labels)
    by_customer = np.argsort(found.positions, kind="stable")  # a ranking model learns one customer's list at a time
    _, list_lengths = np.unique(found.positions[by_customer], return_counts=True)
    return ranker.fit(found.features[by_customer], found.labels[by_customer], group=list_lengths)


def training_candidates(sample: RankerSample) -> Candidates:
    """Every bought candidate of ``sample``, and a share of its unbought ones, chosen for
    ``TRAINING_ROWS`` examples in all."""
    positives = sum(int(found.labels.sum()) for found, _ in sample.kept)
    share = min(1.0, (TRAINING_ROWS - positives) / max(sample.negatives, 1))
    return Candidates.joined([_drawn(found, draws, share)[0] for found, draws in sample.kept])


def mean_relevance(rankers: list[LGBMModel], features: np.ndarray, threads: int = 0) -> np.ndarray:
    """The mean of ``rankers``' scores (``models.compiled_ranker.relevance``) for each row of candidate ``features``."""
    return np.mean([relevance(ranker, features, threads) for ranker in rankers], axis=0)


class LearnedHybrid(BatchRecommender):
    """Fitted components plus learned rankers for each view, one per validation period, whose
    scores are averaged. ``fit`` refits the components on new data and keeps the
    rankers; given ``data``, the components are those already fitted on it."""

    name = "hybrid"

    def __init__(self, components: list[BatchRecommender], rankers: dict[str, list[LGBMModel]],
                 per_model: int, data: Interactions | None = None):
        self.components = components
        self.rankers = rankers
        self.per_model = per_model
        if data is not None:
            self.data = data

    def fit(self, data: Interactions) -> "LearnedHybrid":
        self.components = [component.fit(data) for component in self.components]
        self.data = data
        return self

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.components)

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        return HybridBlock(self, np.asarray(user_rows))

    def top_n_views(self, block: ScoreBlock, user_rows: np.ndarray, n: int,
                    exclude: sp.csr_matrix) -> tuple[TopN, TopN]:
        return block.top_n(n), block.top_n(n, exclude)  # discovery has a ranker of its own


class HybridBlock(ScoreBlock):
    def __init__(self, hybrid: LearnedHybrid, rows: np.ndarray):
        self.hybrid = hybrid
        self.rows = rows
        self._scores: ComponentScores | None = None  # shared by both views
        self._by_view: dict[tuple[str, int | None], SparseBlock] = {}
        self._candidates: dict[tuple[str, int | None], Candidates] = {}

    def _ranked(self, view: str, keep: int | None = None) -> SparseBlock:
        if (view, keep) not in self._by_view:
            self._by_view[view, keep] = SparseBlock(self._rank_candidates(view, keep))
        return self._by_view[view, keep]

    def _rank_candidates(self, view: str, keep: int | None) -> sp.csr_matrix:
        h = self.hybrid
        if self._scores is None:
            self._scores = ComponentScores(h.data, h.components, self.rows, h.per_model)
        found = candidates(self._scores, view, keep)
        self._candidates[view, keep] = found
        # +1 keeps every candidate stored, even at a score of 0.
        score = mean_relevance(h.rankers[view], found.features, openmp_threads()) + 1.0
        return sp.csr_matrix((score, (found.positions, found.cols)), shape=(len(self.rows), h.data.n_items))

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        # A list of n hardly ever takes an item that no component ranks among its best n (on
        # validation, MAP@10 from each one's best 10 equals that from its best 50), and ranking
        # candidates is most of the cost of publishing every customer's lists.
        view = "NEW" if exclude is not None else "ALL"
        return self._ranked(view, CANDIDATES_PER_SLOT * n).top_n(n, exclude)

    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self._ranked("ALL").at(positions, cols)

    def contributors(self, positions: np.ndarray, cols: np.ndarray, n: int, exclude=None) -> np.ndarray:
        """For pairs of ``top_n(n, exclude)``, the index of the component that ranks each best
        among its own items: the one that contributed most to putting it on the list."""
        view = "NEW" if exclude is not None else "ALL"
        self._ranked(view, CANDIDATES_PER_SLOT * n)
        found = self._candidates[view, CANDIDATES_PER_SLOT * n]
        n_items = self.hybrid.data.n_items
        keys = found.positions.astype(np.int64) * n_items + found.cols
        at = np.searchsorted(keys, positions.astype(np.int64) * n_items + cols)
        ranks = component_ranks(found.features[np.minimum(at, len(keys) - 1)], len(self.hybrid.components))
        return np.argmin(ranks, axis=1)


def _keys(top: TopN, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(row * n_items + item, rank) of every item ``top`` proposes."""
    rows, ranks = np.nonzero(top.items >= 0)
    return rows.astype(np.int64) * n_items + top.items[rows, ranks], ranks


def _rank(top: TopN, positions: np.ndarray, cols: np.ndarray, n_items: int, absent: int) -> np.ndarray:
    """Each pair's rank in ``top`` (0 = best), ``absent`` where the component did not propose it."""
    keys, ranks = _keys(top, n_items)
    order = np.argsort(keys)
    keys, ranks = keys[order], ranks[order]
    wanted = positions.astype(np.int64) * n_items + cols
    if len(keys) == 0:
        return np.full(len(wanted), absent, dtype=np.float32)
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, ranks[at], absent).astype(np.float32)


def _scale(top: TopN) -> np.ndarray:
    """Each customer's best score from a component: its scores are features relative to that.
    Raw scores grow with the length of the history a component was fitted on (co-occurrence
    counts, order counts), so a ranker learned on shorter validation histories would misread
    the full history's; relative scores mean the same on both (the raw ones stay beside them,
    for what their level says)."""
    best = np.abs(top.scores[:, 0]) if top.scores.shape[1] else np.ones(len(top.scores), dtype=np.float32)
    return np.where(np.isfinite(best) & (best > 0), best, 1.0)


def _agreement(ranks: np.ndarray, absent: int) -> list[np.ndarray]:
    """How many components propose each pair (``ranks``: pairs x components), and their
    reciprocal-rank fusion: items that several components rank high are the surest, a signal
    trees find hard to piece together from each component's rank alone."""
    by_component = np.ascontiguousarray(ranks.T)  # summed component after component, in order
    proposed = by_component < absent
    return [proposed.sum(axis=0), np.where(proposed, 1.0 / (10.0 + by_component), 0.0).sum(axis=0)]


def _pair_traits(data: Interactions, rows: np.ndarray, positions: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    traits = data.cached("hybrid-traits", lambda: _compute_traits(data))
    users = rows[positions]
    orders = np.asarray(data.orders[users, cols]).ravel()
    age = np.asarray(data.last_age_days[users, cols]).ravel()
    days_since = np.where(age > 0, age - 1.0, NEVER)
    return [orders, days_since, days_since / np.maximum(traits["user_gap"][users], 1.0),
            traits["item_repeat_rate"][cols], traits["item_buyers"][cols], traits["user_orders"][users],
            traits["user_idle"][users], traits["user_items"][users],
            np.asarray(traits["category_shares"][users, traits["category"][cols]]).ravel()]


ITEM_TRAITS = "item-traits"  # the key under which ``Interactions.cached`` keeps the shop's item traits


def _compute_traits(data: Interactions) -> dict[str, np.ndarray]:
    """Per-item and per-customer traits that tell repeat buying from one-off buying. Item traits
    are the whole shop's: a slice of its customers (``Interactions.preset``) is given them."""
    bought = data.bought
    items = data.cached(ITEM_TRAITS, lambda: item_traits(np.asarray(bought.sum(axis=0)).ravel(),
                                                         np.asarray((data.orders > 1).sum(axis=0)).ravel(),
                                                         data.n_users, item_categories(data)))
    per_user = data.events.groupby("user_id").agg(orders=("order_id", "nunique"), first=("timestamp", "min"),
                                                  last=("timestamp", "max")).reindex(data.user_ids)
    span = (per_user["last"] - per_user["first"]).dt.total_seconds().to_numpy() / 86400
    user_orders = per_user["orders"].to_numpy(dtype=np.float64)
    return {
        **items,
        "category_shares": _category_shares(bought, items["category"]),
        "user_orders": user_orders,
        "user_idle": (data.end - per_user["last"]).dt.total_seconds().to_numpy() / 86400,
        "user_gap": span / np.maximum(user_orders - 1, 1),
        "user_items": np.asarray(bought.sum(axis=1)).ravel(),
    }


def item_traits(buyers: np.ndarray, repeaters: np.ndarray, n_users: int, category: np.ndarray) -> dict[str, np.ndarray]:
    """Each item's category code, share of buyers who bought it again, and share of customers who bought it."""
    return {"category": category,
            "item_repeat_rate": (repeaters + 1) / (buyers + 5),  # smoothed towards 0.2 for rarely bought items
            "item_buyers": buyers / max(n_users, 1)}


def item_categories(data: Interactions) -> np.ndarray:
    """Each item's category code: the catalog's categories, else ones derived from the items'
    texts (``models.item_categories``). A customer's categories say what they will buy next
    where a few purchases say little about single items: on validation, the simulator's lists
    rose 2-4% and those of Ta-Feng's global cut 1-5%."""
    return category_codes(data.items, data.item_ids)


def category_codes(items: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """The category code of each of ``item_ids`` from the item_id-indexed catalog ``items``."""
    return pd.factorize(catalog_categories(items.reindex(item_ids)).to_numpy())[0]


def _category_shares(bought: sp.csr_matrix, category: np.ndarray) -> sp.csr_matrix:
    """customers x categories: the share of each customer's distinct items in each category."""
    member = sp.csr_matrix((np.ones(len(category)), (np.arange(len(category)), category)),
                           shape=(len(category), int(category.max(initial=0)) + 1))
    counts = (bought.astype(np.float64) @ member).tocsr()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    return (sp.diags(1.0 / np.maximum(totals, 1.0)) @ counts).tocsr()
