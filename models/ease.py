"""EASE (Steck 2019): a closed-form linear item-item model for implicit feedback."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg import get_lapack_funcs

from models.base import DenseBlock, ItemItemRecommender, ScoreBlock, TopN, sparse_top_n
from models.interactions import Interactions


class EASE(ItemItemRecommender):
    """Item weights ``B = I - P / diag(P)`` with ``P = (X'X + lambda I)^-1``, zero diagonal.

    ``B`` is dense, so it is learned over the ``max_items`` most-bought items only
    (memory grows with its square); other items get no EASE score. Scores use the
    binary purchase matrix, as the model was fitted on it.
    """

    name = "ease"
    fits_on_every_core = True

    def __init__(self, l2: float = 200.0, max_items: int = 6000, neighbours: int = 100):
        self.l2 = l2
        self.max_items = max_items
        self.neighbours = neighbours

    def fit(self, data: Interactions) -> "EASE":
        self.data = data
        columns = self.columns_of(np.asarray(data.bought.sum(axis=0)).ravel())
        X = data.bought[:, columns]
        return self.fit_gram((X.T @ X).toarray().astype(np.float32), columns, data.n_items)

    def columns_of(self, buyers: np.ndarray) -> np.ndarray:
        """The item columns the model is learned over: the ``max_items`` most bought, in column order."""
        return np.sort(np.argsort(-buyers, kind="stable")[: self.max_items])

    def fit_gram(self, gram: np.ndarray, columns: np.ndarray, n_items: int) -> "EASE":
        """Learn from the Gram matrix of the binary purchase matrix over ``columns`` (co-buyers of
        each pair, buyers on the diagonal), however it was counted: a distributed engine sums it
        over its partitions. The model then serves customers once given their data (``serving``)."""
        self.columns = columns
        gram = np.array(gram, dtype=np.float32)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = _spd_inverse(gram)
        weights = -precision / np.diag(precision)
        np.fill_diagonal(weights, 0.0)
        self.weights = weights.astype(np.float32)
        # Neighbours for similar-item lists, in the whole item space.
        local = sparse_top_n(sp.csr_matrix(np.maximum(self.weights, 0.0)), self.neighbours)
        found = local.items >= 0
        rows = np.broadcast_to(self.columns[:, None], found.shape)[found]
        self.similarity = sp.csr_matrix((local.scores[found], (rows, self.columns[local.items[found]])),
                                        shape=(n_items, n_items))
        return self

    def block(self, user_rows: np.ndarray) -> ScoreBlock:
        # float32 on both sides: a float64 history would make scipy copy the whole of B as float64
        # for every block, thirty times the cost of the product itself.
        history = self.data.bought[user_rows][:, self.columns].astype(np.float32)
        return _SubsetBlock(np.asarray(history @ self.weights), self.columns, self.data.n_items)


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix (a Gram matrix plus lambda I), by
    Cholesky: a quarter of the time of a general inverse. float32 halves it again; lambda keeps
    the matrix well conditioned."""
    factorise, invert = get_lapack_funcs(("potrf", "potri"), (matrix,))
    factor, failed = factorise(matrix, lower=True, clean=True, overwrite_a=True)
    if failed:
        raise np.linalg.LinAlgError(f"the item Gram matrix is not positive definite (LAPACK potrf {failed})")
    inverse, failed = invert(factor, lower=True, overwrite_c=True)
    if failed:
        raise np.linalg.LinAlgError(f"the item Gram matrix is singular (LAPACK potri {failed})")
    lower = np.tril(inverse)
    return lower + np.tril(lower, -1).T


class _SubsetBlock(DenseBlock):
    """Dense scores over a subset of the items (``columns``); other items score 0 and are never proposed."""

    def __init__(self, scores: np.ndarray, columns: np.ndarray, n_items: int):
        super().__init__(scores)
        self.columns = columns
        self.position = np.full(n_items, -1, dtype=np.int64)
        self.position[columns] = np.arange(len(columns))

    def top_n(self, n: int, exclude: sp.csr_matrix | None = None) -> TopN:
        top = super().top_n(n, exclude[:, self.columns] if exclude is not None else None)
        return TopN(np.where(top.items >= 0, self.columns[np.maximum(top.items, 0)], -1), top.scores)

    def at(self, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
        local = self.position[cols]
        return np.where(local >= 0, self.scores[positions, np.maximum(local, 0)], 0.0).astype(np.float32)
