"""The contract every recommender in the product follows.

Like River's estimators, a recommender learns from one interaction at a time
(``learn_one``) and answers for one user at a time (``recommend``). Inputs
and outputs are plain Python values: ids are strings, scores are floats.
"""

from __future__ import annotations

import heapq
from operator import itemgetter
from abc import ABC, abstractmethod
from typing import Collection, NamedTuple, Sequence


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


class Recommender(ABC):
    #: Names the model in every list it produces (``model_version`` in Redis).
    name: str = "recommender"

    @abstractmethod
    def learn_one(self, x: Interaction) -> None:
        """Update the model with one interaction."""

    @abstractmethod
    def recommend(
        self, user_id: str, context: Sequence[str], k: int, exclude: Collection[str] = ()
    ) -> Scored:
        """Return up to ``k`` (item_id, score) pairs, best first, none of them in ``exclude``.

        ``context`` is the user's recent items, most recent last.
        """


def top_k(scores: dict[str, float], k: int, exclude: Collection[str] = ()) -> Scored:
    """The ``k`` best-scored items not in ``exclude``; ties keep insertion order."""
    candidates = scores.items() if not exclude else ((i, s) for i, s in scores.items() if i not in exclude)
    return heapq.nlargest(k, candidates, key=itemgetter(1))
