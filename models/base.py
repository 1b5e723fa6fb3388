"""The two contracts every recommender in the product follows.

Streaming models, like River's estimators, learn from one interaction at a
time (``learn_one``) and answer for one user at a time (``recommend``), with
what is known of the user's visit passed as one ``Context``.
Batch models, like Surprise's algorithms, ``fit`` on a whole history and then
score a block of users (``block``): the block answers each user's best items
(``top_n``) and the score of any (user, item) pair (``at``). Blocks stay sparse
or factorised, so nothing users x items, nor items x items, is ever dense.
Ids are strings, scores are floats.
"""

from __future__ import annotations

import copy
import heapq
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Callable, Collection, Mapping, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info

from models.explanations import DISCOVER, Reason


class Interaction(NamedTuple):
    """One user touching one item.

    ``context`` holds the items the user touched just before, most recent last;
    ``weight`` says how strong a signal the action is (a view < a purchase).
    """

    user_id: str
    item_id: str
    ts: float
    weight: float = 1.0
    context: Sequence[str] = ()


Scored = list[tuple[str, float]]


@dataclass(frozen=True)
class Context:
    """What is known of the user's visit when a list is asked for; every part optional."""

    recent: Sequence[str] = ()  # items the user touched lately, most recent last
    cart: Sequence[str] = ()  # in their cart now
    segment: str = ""  # their customer segment, when known
    exclude: Collection[str] = ()  # never to be listed
    bought: Sequence[str] = ()  # bought since the model was trained, oldest first
    bought_times: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # item -> (orders, last time) of those


NO_CONTEXT = Context()

#: A capability: ``static_list(user_id, k)`` answers the list trained offline, before any session.
STATIC_LISTS = "static_lists"


class Recommender(ABC):
    #: Names the model in every list it produces (``model_version`` in Redis).
    name: str = "recommender"
    #: What the model can do beyond the contract, declared rather than found out by its type.
    capabilities: frozenset[str] = frozenset()

    @abstractmethod
    def learn_one(self, x: Interaction) -> None:
        """Update the model with one interaction."""

    def learn_item(self, item_id: str, category: str | None = None, price: float | None = None) -> None:
        """Learn a catalog record (models that use item traits override this)."""

    @abstractmethod
    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        """Return up to ``k`` (item_id, score) pairs, best first, none of them in ``context.exclude``."""

    def slot_lists(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> dict[str, Scored]:
        """Lists for the storefront's other slots, by slot name (``buyagain``, ``discover``).
        Models without such lists return none."""
        return {}

    def explain(self, user_id: str, items: Sequence[str], context: Context = NO_CONTEXT,
                slot: str = "recs") -> list[Reason]:
        """Why each of ``items`` (a list this model just made for the slot) is on it
        (``models.explanations``). Models that cannot tell name themselves as the finder."""
        return [Reason(DISCOVER, self.name)] * len(items)


def top_k(scores: dict[str, float], k: int, exclude: Collection[str] = ()) -> Scored:
    """The ``k`` best-scored items not in ``exclude``; ties keep insertion order.

    A full sort (in C) beats a Python heap for the few hundred candidates a list draws on,
    and exclusions are then skipped from the best down; for a large pool, the heap."""
    if len(scores) > 50 * k:
        candidates = scores.items() if not exclude else [(i, s) for i, s in scores.items() if i not in exclude]
        return heapq.nlargest(k, candidates, key=itemgetter(1))
    ranked = sorted(scores.items(), key=itemgetter(1), reverse=True)
    if not exclude:
        return ranked[:k]
    best: Scored = []
    for pair in ranked:
        if pair[0] not in exclude:
            best.append(pair)
            if len(best) == k:
                break
    return best


class TopN(NamedTuple):
    """Each user's best items: ``items`` (users x n) columns, -1 past the end of a short
    list; ``scores`` the same shape, -inf past the end."""

    items: np.ndarray
    scores: np.ndarray


def sparse_top_n(scores: sp.csr_matrix, n: int, max_cells: int = 8_000_000) -> TopN:
    """The ``n`` best stored entries of each row, best first.

    Rows are laid out side by side in dense strips no wider than their longest row, so a
    linear-time partition finds each row's best (a full sort of every entry is far slower).
    Rows are grouped by length first: one long row among short ones would otherwise pad the
    whole strip to its width."""
    scores = scores.tocsr()
    counts = np.diff(scores.indptr)
    by_length = np.argsort(counts, kind="stable")
    ordered, counts = scores[by_length], counts[by_length]
    n_rows = scores.shape[0]
    items = np.full((n_rows, n), -1, dtype=np.int64)
    best = np.full((n_rows, n), -np.inf, dtype=np.float32)
    start = 0
    while start < n_rows:
        # Rows are in ascending length: a strip's width is its last row's.
        stop = start + 1
        while stop < n_rows and max(int(counts[stop]), 1) * (stop + 1 - start) <= max_cells:
            stop += 1
        _strip_top_n(ordered, start, stop, max(int(counts[stop - 1]), 1), n, items, best)
        start = stop
    items[by_length], best[by_length] = items.copy(), best.copy()  # back in the caller's row order
    return TopN(items, best)


def _strip_top_n(scores: sp.csr_matrix, start: int, stop: int, width: int, n: int,
                 items: np.ndarray, best: np.ndarray) -> None:
    lo, hi = scores.indptr[start], scores.indptr[stop]
    if hi == lo:
        return
    rows = np.repeat(np.arange(stop - start), np.diff(scores.indptr[start:stop + 1]))
    slot = np.arange(lo, hi) - scores.indptr[start:stop][rows]
    keys = np.full((stop - start, width), UNSTORED, dtype=np.uint64)
    keys[rows, slot] = _rank_keys(scores.data[lo:hi], scores.indices[lo:hi])
    take = min(n, width)
    if take < width:
        keys = np.partition(keys, take - 1, axis=1)[:, :take]
    keys.sort(axis=1)
    cols, values = _decoded(keys)
    stored = (keys != UNSTORED) & np.isfinite(values)
    items[start:stop, :take] = np.where(stored, cols, -1)
    best[start:stop, :take] = np.where(stored, values, -np.inf)


# A row's entries rank by one integer key each: score descending, then column ascending, so
# equal scores rank by column and a row's list does not depend on the rows ranked beside it.
# The high half is the score's bits, flipped to sort as integers; the low half, the column.
UNSTORED = np.iinfo(np.uint64).max
SIGN = np.uint32(0x80000000)


def _rank_keys(values: np.ndarray, cols: np.ndarray) -> np.ndarray:
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 ranks as 0.0
    ascending = np.where(bits & SIGN, ~bits, bits | SIGN)
    return ((~ascending).astype(np.uint64) << np.uint64(32)) | np.asarray(cols).astype(np.uint32)


def _decoded(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns and scores of ``_rank_keys``' keys."""
    ascending = ~(keys >> np.uint64(32)).astype(np.uint32)
    bits = np.where(ascending & SIGN, ascending & ~SIGN, ~ascending)
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64), bits.view(np.float32)


def dense_top_n(scores: np.ndarray, n: int, exclude: sp.csr_matrix | None = None,
                max_cells: int = 4_000_000) -> TopN:
    """The ``n`` best columns of each row of a dense block, skipping ``exclude``'s entries.
    Ranked a strip of rows at a time: the partition's index array is eight bytes a cell, and
    a whole block's would cost more memory than its scores."""
    strip = max(1, max_cells // max(scores.shape[1], 1))
    tops = [_dense_strip_top_n(scores[start:start + strip], n,
                               exclude[start:start + strip] if exclude is not None else None)
            for start in range(0, scores.shape[0], strip)]
    if not tops:
        return pad_top_n(TopN(np.zeros((0, 0), dtype=np.int64), np.zeros((0, 0), dtype=np.float32)), n)
    return TopN(np.vstack([top.items for top in tops]), np.vstack([top.scores for top in tops]))


def _dense_strip_top_n(scores: np.ndarray, n: int, exclude: sp.csr_matrix | None) -> TopN:
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        scores[exclude.nonzero()] = -np.inf
    n_cols = scores.shape[1]
    take = min(n, n_cols)
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n_cols else \
        np.tile(np.arange(n_cols), (scores.shape[0], 1))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    items, values = np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)
    items = np.where(np.isfinite(values), items, -1)
    return pad_top_n(TopN(items.astype(np.int64), values), n)


def top_n_with_and_without(block: "ScoreBlock", n: int, exclude: sp.csr_matrix,
                           block_of: Callable[[np.ndarray], "ScoreBlock"]) -> tuple[TopN, TopN]:
    """``block.top_n(n)`` and ``block.top_n(n, exclude)`` from one ranking of each row's ``2 n``
    best items: the second is the first less the excluded items, for a block whose excluding
    list is exactly that (every component's is; the hybrid's discovery ranking is not). Rows
    for which too few of those remain are ranked again by ``block_of(their block rows)``."""
    wide = block.top_n(2 * n)
    rows = np.repeat(np.arange(len(wide.items)), wide.items.shape[1])
    excluded = np.asarray(exclude[rows, np.maximum(wide.items, 0).ravel()]).reshape(wide.items.shape) != 0
    kept = (wide.items < 0) | ~excluded
    order = np.argsort(~kept, axis=1, kind="stable")[:, :n]
    items = np.take_along_axis(np.where(kept, wide.items, -1), order, axis=1)
    scores = np.take_along_axis(np.where(kept, wide.scores, -np.inf), order, axis=1).astype(np.float32)
    # A row is short only if its wide ranking was full (more items may follow) and lost too many.
    short = np.flatnonzero((wide.items[:, -1] >= 0) & (kept.sum(axis=1) < n))
    if len(short):
        again = block_of(short).top_n(n, exclude[short])
        items[short], scores[short] = again.items, again.scores
    return TopN(wide.items[:, :n], wide.scores[:, :n]), TopN(items, scores)


def pad_top_n(top: TopN, n: int) -> TopN:
    missing = n - top.items.shape[1]
    if missing <= 0:
        return top
    rows = top.items.shape[0]
    return TopN(np.hstack([top.items, np.full((rows, missing), -1, dtype=np.int64)]),
                np.hstack([top.scores, np.full((rows, missing), -np.inf, dtype=np.float32)]))


def without(scores: sp.csr_matrix, exclude: sp.csr_matrix | None) -> sp.csr_matrix:
    """``scores`` less the entries where ``exclude`` (same shape) stores a non-zero."""
    if exclude is None or exclude.nnz == 0 or scores.nnz == 0:
        return scores
    pairs = scores.tocoo()
    keep = np.asarray(exclude[pairs.row, pairs.col]).ravel() == 0
    return sp.csr_matrix((pairs.data[keep], (pairs.row[keep], pairs.col[keep])), shape=scores.shape)


def openmp_threads() -> int:
    """The OpenMP threads the calling thread is allowed (one in the trainer's worker threads);
    0, the libraries' "one per core", where nothing limits it. LightGBM and implicit set their
    own thread count on every call, whatever limit the calling thread has."""
    allowed = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"]
    return min(allowed, default=0)


class CannotFit(ValueError):
    """The data lacks what a model needs (no item text, too large a catalog, ...): the model
    is left out with this reason, and training goes on without it."""


class ScoreBlock(ABC):
    """A batch model's scores for a block of users."""

    @abstractmethod
    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        """Each user's ``n`` best items, leaving out ``exclude``'s entries (users x items)."""

    @abstractmethod
    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Scores of the pairs (block row ``positions[j]``, item ``cols[j]``); 0 where unknown."""


class SparseBlock(ScoreBlock):
    """Scores held as a sparse (users x items) matrix: what the user has evidence for."""

    def __init__(self, scores: sp.csr_matrix):
        self.scores = scores.tocsr()
        self.scores.sum_duplicates()  # sorted indices: each entry's key below is in order
        self._keys: np.ndarray | None = None

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        return sparse_top_n(without(self.scores, exclude), n)

    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        # One search over every entry's (row, column) key: a row at a time, as scipy looks
        # pairs up, a search strays over the row's memory for every pair and took seven times
        # as long on rows of thousands of entries.
        if self._keys is None:
            rows = np.repeat(np.arange(self.scores.shape[0], dtype=np.int64), np.diff(self.scores.indptr))
            self._keys = rows * self.scores.shape[1] + self.scores.indices
        if len(positions) == 0 or len(self._keys) == 0:
            return np.zeros(len(positions), dtype=np.float32)
        wanted = np.asarray(positions, dtype=np.int64) * self.scores.shape[1] + cols
        at = np.minimum(np.searchsorted(self._keys, wanted), len(self._keys) - 1)
        return np.where(self._keys[at] == wanted, self.scores.data[at], 0.0).astype(np.float32)


class DenseBlock(ScoreBlock):
    """Scores held as a dense (users x items) array: for models whose every score is defined."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        return dense_top_n(self.scores, n, exclude)

    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.asarray(self.scores[positions, cols], dtype=np.float32)


class BatchRecommender(ABC):
    """Offline models, in the manner of Surprise's ``fit`` / ``estimate``: ``fit`` on a
    whole :class:`~models.interactions.Interactions`, then ``block(user_rows)``."""

    name: str = "batch-recommender"
    #: Declared capabilities: ``item_neighbours`` (has ``similar_items``), ``discovers``
    #: (can propose items the user never bought), ``personal`` (differs per user).
    capabilities: frozenset[str] = frozenset({"discovers", "personal"})
    #: Its ``fit`` runs on every core by itself (BLAS, or threads of its own); others run on one.
    fits_on_every_core: bool = False

    @abstractmethod
    def fit(self, data) -> "BatchRecommender":
        """Learn from ``data`` (an ``Interactions``); return self."""

    @abstractmethod
    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        """Scores of the users at ``user_rows`` (indices into ``data.user_ids``)."""

    def serving(self, data) -> "BatchRecommender":
        """This fitted model serving the customers of ``data``, a slice of the customers of the
        history it was fitted on, in the same item space: what it learned of items is kept, what it
        knows of customers is read from ``data``. A distributed engine scores each slice apart."""
        served = copy.copy(self)
        served.data = data
        return served

    def top_n_views(self, block: ScoreBlock, user_rows: np.ndarray, n: int,
                    exclude: sp.csr_matrix) -> tuple[TopN, TopN]:
        """``block`` (this model's for ``user_rows``): each user's ``n`` best items, and their
        ``n`` best outside ``exclude``. A model whose list outside ``exclude`` is not simply its
        full list less those items ranks the two apart."""
        return top_n_with_and_without(block, n, exclude, lambda at: self.block(user_rows[at]))

    def refuses(self, data) -> str | None:
        """Why this model cannot be fitted on ``data`` (a size limit, say), known before any
        work; None when it can. Lets a trainer that chooses on a sample skip what the whole
        history could not fit."""
        return None

    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        exclude = context.exclude
        data = self.data
        if user_id not in data.user_index:
            return []
        top = self.block(np.array([data.user_index[user_id]])).top_n(k + len(exclude))
        ranked = [(data.item_ids[j], float(s)) for j, s in zip(top.items[0], top.scores[0]) if j >= 0]
        return [(item, score) for item, score in ranked if item not in exclude][:k]


class ItemItemRecommender(BatchRecommender):
    """Models defined by a sparse item-item similarity (each item keeps its best neighbours):
    a user's score for an item is the similarity of that item to the user's history,
    recent purchases counting more."""

    capabilities = frozenset({"discovers", "personal", "item_neighbours"})
    history_half_life_days: float = 30.0
    similarity: sp.csr_matrix

    def history(self, user_rows: np.ndarray) -> sp.csr_matrix:
        return self.data.decayed(self.history_half_life_days)[user_rows]

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        return SparseBlock(self.history(user_rows) @ self.similarity)

    def similar_items(self, item_id: str, k: int) -> Scored:
        """The ``k`` items most similar to ``item_id`` (empty for an unknown item)."""
        col = self.data.item_index.get(item_id)
        if col is None:
            return []
        top = sparse_top_n(self.similarity[col], k)
        return [(self.data.item_ids[j], float(s)) for j, s in zip(top.items[0], top.scores[0]) if j >= 0 and s > 0]
