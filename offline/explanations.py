"""Reasons for the published lists, from the component that contributed most to each item.

For the hybrid, that is the component that ranks the item best among its own proposals; for a
list the guard gave to one component, that component; for popular fill-ins, popularity. The
component then names the reason (``models.explanations``): repeat purchase -> ``bought_before``,
item-item models -> ``similar_to`` the customer's item that pulls the item most, popularity
(recent or trending) -> ``trending``, anything else -> ``discover``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import BatchRecommender, ScoreBlock, TopN
from models.explanations import BOUGHT_BEFORE, DISCOVER, SIMILAR_TO, TRENDING, bought_before
from models.hybrid import HybridBlock
from models.interactions import Interactions
from models.popularity import RecentPopularity

DAY = 86400.0


class ListExplainer:
    """Explains chunks of customers' lists; item-item similarities are transposed once."""

    def __init__(self, data: Interactions):
        self.data = data
        self._columns_of: dict[str, sp.csr_matrix] = {}

    def explain(self, model: BatchRecommender, block: ScoreBlock, rows: np.ndarray, top: TopN, proposed: TopN,
                exclude: sp.csr_matrix | None = None) -> pd.DataFrame:
        """Each customer's reasons for ``top``, a frame row per customer (``reasons``: the codes, and
        their ``evidence``): the model's own ``proposed`` (``block.top_n(n, exclude)``), then
        popular fill-ins."""
        n = proposed.items.shape[1]
        proposed = proposed.items
        listed = top.items >= 0
        positions, slots = np.nonzero(listed)
        cols = top.items[positions, slots]
        own = (proposed[positions] == cols[:, None]).any(axis=1)
        components = np.full(len(cols), -1)
        if isinstance(block, HybridBlock):
            components[own] = block.contributors(positions[own], cols[own], n, exclude)
            members = model.components
        else:
            components[own] = 0
            members = [model]
        codes, evidence = np.empty(len(cols), dtype=object), np.empty(len(cols), dtype=object)
        for index in np.unique(components):
            pairs = np.flatnonzero(components == index)
            member = members[index] if index >= 0 else None
            codes[pairs], evidence[pairs] = self._reasons(member, rows, positions[pairs], cols[pairs])
        return pd.DataFrame({"reasons": per_row(codes, listed), "evidence": per_row(evidence, listed)})

    def _reasons(self, member: BatchRecommender | None, rows, positions, cols) -> tuple[list, list]:
        """Reason codes and their evidence for the pairs ``member`` contributed."""
        users = rows[positions]
        if member is None or isinstance(member, RecentPopularity):
            return [TRENDING] * len(cols), [""] * len(cols)
        if member.name == "repeat":
            return [BOUGHT_BEFORE] * len(cols), self._bought_before(users, cols)
        if "item_neighbours" in member.capabilities:
            return self._similar_to(member, rows, positions, cols)
        return [DISCOVER] * len(cols), [member.name] * len(cols)

    def _bought_before(self, users, cols) -> list[str]:
        times = np.asarray(self.data.orders[users, cols]).ravel()
        age = np.asarray(self.data.last_age_days[users, cols]).ravel() - 1.0
        last = self.data.end.timestamp() - age * DAY
        return [bought_before(int(t), float(ts)).evidence for t, ts in zip(times, last)]

    def _similar_to(self, member, rows, positions, cols) -> tuple[list, list]:
        """The customer's item that pulls each item most (history weight x similarity)."""
        if member.name not in self._columns_of:
            self._columns_of[member.name] = member.similarity.T.tocsr()
        pulls = member.history(rows)[positions].multiply(self._columns_of[member.name][cols]).tocsr()
        strongest, found = _strongest_positive(pulls)
        return (np.where(found, SIMILAR_TO, DISCOVER).tolist(),
                np.where(found, self.data.item_ids[strongest], member.name).tolist())


def per_row(values: np.ndarray, cells: np.ndarray) -> list[list]:
    """``values`` of the true ``cells`` (a boolean matrix, read row by row) as one list per row."""
    return [part.tolist() for part in np.split(values, np.cumsum(cells.sum(axis=1))[:-1])]


def _strongest_positive(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column of its largest stored value (ties: the first column) and whether
    that value is positive; sorted once, rather than scanned row by row."""
    matrix.sum_duplicates()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((matrix.indices, -matrix.data, rows))
    filled = np.diff(matrix.indptr) > 0
    first = order[matrix.indptr[:-1][filled]]
    strongest = np.zeros(matrix.shape[0], dtype=np.int64)
    found = np.zeros(matrix.shape[0], dtype=bool)
    strongest[filled], found[filled] = matrix.indices[first], matrix.data[first] > 0
    return strongest, found
