"""Sparse item neighbours from a self-join: each item keeps only its ``k`` best.

The join runs over blocks of items sized by the work they cause, so memory is
bounded by ``max_entries`` whatever the catalog size; the same shape maps onto
a distributed engine (join baskets by user, group by item, keep the top k).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from models.base import sparse_top_n

# (row items, column items, dot products) -> similarities
Measure = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def top_neighbours(vectors: sp.csr_matrix, k: int, measure: Measure | None = None,
                   max_entries: int = 20_000_000, among: np.ndarray | None = None,
                   rows: np.ndarray | None = None) -> sp.csr_matrix:
    """items x items: for each row of ``vectors`` (items x features) its ``k`` best other
    items by ``measure`` of their dot products (the dot product itself by default), chosen
    ``among`` the given item rows (default: all). Only ``rows`` (default: all) get neighbours:
    a distributed engine gives each task a block of items and the features those touch.

    >>> v = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 1, 2], [0, 0, 1]], dtype=float))
    >>> top_neighbours(v, k=1).toarray().astype(int).tolist()
    [[0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 2], [0, 0, 2, 0]]
    >>> top_neighbours(v, k=1, among=np.array([2, 3])).toarray().astype(int).tolist()
    [[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 2], [0, 0, 2, 0]]
    >>> top_neighbours(v, k=1, rows=np.array([2])).toarray().astype(int).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 0]]
    """
    vectors = sp.csr_matrix(vectors, dtype=np.float32)
    n = vectors.shape[0]
    among = np.arange(n) if among is None else np.asarray(among)
    rows = np.arange(n) if rows is None else np.asarray(rows)
    right = vectors[among].T.tocsr()
    # Upper bound of each item's joined entries: how many non-zeros its features' other items have.
    work = np.asarray(vectors[rows].astype(bool).astype(np.float32) @ right.astype(bool).sum(axis=1)).ravel()
    kept_rows, kept_items, kept_scores = [], [], []
    for start, stop in work_blocks(work, max_entries):
        chosen = rows[start:stop]
        gram = (vectors[chosen] @ right).tocsr()
        at = np.repeat(chosen, np.diff(gram.indptr))
        cols = among[gram.indices]
        values = gram.data if measure is None else measure(at, cols, gram.data)
        # An item is not its own neighbour; -inf entries are never among a row's best.
        gram.data = np.where((at != cols) & (values > 0), values, -np.inf).astype(np.float32)
        top = sparse_top_n(gram, k)
        found = top.items >= 0
        kept_rows.append(chosen[np.nonzero(found)[0]])
        kept_items.append(among[top.items[found]])
        kept_scores.append(top.scores[found])
    if not kept_rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(kept_scores), (np.concatenate(kept_rows), np.concatenate(kept_items))),
                         shape=(n, n), dtype=np.float32)


def work_blocks(work: np.ndarray, max_entries: int):
    """(start, stop) runs of rows whose summed ``work`` stays near ``max_entries``."""
    start, total = 0, 0.0
    for stop, cost in enumerate(work, start=1):
        total += cost
        if total >= max_entries:
            yield start, stop
            start, total = stop, 0.0
    if start < len(work):
        yield start, len(work)


def jaccard(counts: np.ndarray) -> Measure:
    """Together / (either): SAR's default, given each item's buyer count."""
    return lambda rows, cols, together: together / (counts[rows] + counts[cols] - together)


def cosine(counts: np.ndarray) -> Measure:
    return lambda rows, cols, together: together / np.sqrt(counts[rows] * counts[cols])
