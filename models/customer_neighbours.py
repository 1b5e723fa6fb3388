"""Customer-based collaborative filtering: customers who buy alike, buy alike.

Where items are many and each is bought rarely (groceries, long catalogs), item
neighbours are noisy: two items share few buyers. Customers share more: a
customer's nearest customers, by the cosine of their purchase vectors, vote
for what they bought, each vote weighted by how alike the two are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.base import BatchRecommender, CannotFit, ScoreBlock, SparseBlock, sparse_top_n
from models.interactions import Interactions
from models.neighbours import work_blocks


class CustomerNeighbours(BatchRecommender):
    """Each customer's ``neighbours`` most similar customers, chosen among the ``max_pool``
    customers who bought the most distinct items (all of them in most shops): the pool
    bounds each customer's work, and the most varied histories are the most informative
    voters. Past ``max_customers`` the model is left out: scoring every customer against
    the pool would cost more than the rest of training.

    >>> import pandas as pd
    >>> lines = [("ann", "tea"), ("ann", "cups"), ("bob", "tea"), ("bob", "cups"), ("bob", "jam"),
    ...          ("cy", "rice")]
    >>> events = pd.DataFrame([{"user_id": u, "item_id": i, "order_id": u, "timestamp": pd.Timestamp(0),
    ...                         "quantity": 1, "price": 1.0} for u, i in lines])
    >>> model = CustomerNeighbours(neighbours=1).fit(Interactions.from_frame(events))
    >>> [item for item, _ in model.recommend("ann", 3)]
    ['cups', 'jam', 'tea']
    """

    name = "customer-knn"

    def __init__(self, neighbours: int = 200, max_pool: int = 50_000, max_customers: int = 300_000,
                 max_entries: int = 10_000_000):
        self.neighbours = neighbours
        self.max_pool = max_pool
        self.max_customers = max_customers
        self.max_entries = max_entries

    def refuses(self, data: Interactions) -> str | None:
        if data.n_users > self.max_customers:
            return f"{data.n_users:,} customers, over its limit of {self.max_customers:,}"
        return None

    def fit(self, data: Interactions) -> "CustomerNeighbours":
        if (reason := self.refuses(data)) is not None:
            raise CannotFit(reason)
        distinct = np.asarray(data.bought.sum(axis=1)).ravel()
        pool = np.sort(np.argsort(-distinct, kind="stable")[: self.max_pool])
        self.fit_pool(data.user_ids[pool], data.bought[pool])
        self._read_customers(data)
        return self

    def fit_pool(self, pool_ids: np.ndarray, pool_bought: sp.csr_matrix) -> "CustomerNeighbours":
        """Learn from the pool's purchases alone (``pool_bought``: 1 where each of the customers
        ``pool_ids`` bought each item): all the model keeps of the shop. A distributed engine
        collects only the pool, and serves each slice of customers apart (``serving``)."""
        self.pool_ids = np.asarray(pool_ids, dtype=object)
        self.pool_bought = sp.csr_matrix(pool_bought, dtype=np.float32)
        self.pool_unit_by_item = _unit_rows(self.pool_bought).T.tocsr()
        # Each item's pool buyers: a customer's joined entries are the sum over what they bought.
        self.pool_buyers = np.asarray(self.pool_bought.sum(axis=0)).ravel()
        return self

    def serving(self, data: Interactions) -> "CustomerNeighbours":
        served = super().serving(data)
        served._read_customers(data)
        return served

    def _read_customers(self, data: Interactions) -> None:
        """What the model knows of the customers it serves: their purchase vectors, scaled to unit
        length, and their places in the pool (-1: not in it)."""
        self.data = data
        self.unit = _unit_rows(data.bought.astype(np.float32))
        self.pool_position = pd.Index(self.pool_ids).get_indexer(data.user_ids)

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        work = self.data.bought[user_rows] @ self.pool_buyers
        parts = [self._scores(user_rows[start:stop]) for start, stop in work_blocks(work, self.max_entries)]
        n_items = self.data.n_items
        return SparseBlock(sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, n_items), dtype=np.float32))

    def _scores(self, user_rows: np.ndarray) -> sp.csr_matrix:
        alike = (self.unit[user_rows] @ self.pool_unit_by_item).tocsr()
        rows = np.repeat(np.arange(len(user_rows)), np.diff(alike.indptr))
        # A customer is not their own neighbour.
        alike.data[alike.indices == self.pool_position[user_rows][rows]] = 0.0
        alike.eliminate_zeros()
        top = sparse_top_n(alike, self.neighbours)
        found = top.items >= 0
        nearest = sp.csr_matrix((top.scores[found], (np.nonzero(found)[0], top.items[found])),
                                shape=(len(user_rows), self.pool_bought.shape[0]))
        return (nearest @ self.pool_bought).tocsr()


def _unit_rows(bought: sp.csr_matrix) -> sp.csr_matrix:
    """Each customer's purchase vector scaled to unit length."""
    distinct = np.asarray(bought.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.sqrt(np.maximum(distinct, 1.0))) @ bought, dtype=np.float32)
