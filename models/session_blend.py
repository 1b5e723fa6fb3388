"""The streaming recommender: popularity blended with session co-occurrence."""

from __future__ import annotations

from models.base import NO_CONTEXT, Context, Interaction, Recommender, Scored, top_k
from models.cooccurrence import SessionCooccurrence
from models.popularity import RecencyWeightedPopularity


class PopularityCooccurrenceBlend(Recommender):
    """``popularity_share`` of the score is popularity, the rest co-occurrence
    with the user's context; each part is scaled to a maximum of 1 first.

    Without context (a new or idle user) the list is pure popularity.

    >>> blend = PopularityCooccurrenceBlend(half_life_seconds=86400)
    >>> for user, basket in (("a", ["tea", "cups"]), ("b", ["tea", "cups"]), ("c", ["jam"])):
    ...     for n, item in enumerate(basket):
    ...         blend.learn_one(Interaction(user, item, ts=0.0, context=basket[:n]))
    >>> [item for item, _ in blend.recommend("d", 3, Context(recent=["cups"], exclude=["cups"]))]
    ['tea', 'jam']
    """

    name = "popularity-cooccurrence"

    def __init__(self, half_life_seconds: float = 7 * 86400.0, popularity_share: float = 0.3, pool: int = 200):
        if not 0 <= popularity_share <= 1:
            raise ValueError("popularity_share must be within [0, 1]")
        self.popularity = RecencyWeightedPopularity(half_life_seconds)
        self.cooccurrence = SessionCooccurrence()
        self.popularity_share = popularity_share
        self.pool = pool

    def learn_one(self, x: Interaction) -> None:
        self.popularity.learn_one(x)
        self.cooccurrence.learn_one(x)

    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        popular = self.popularity.recommend(user_id, self.pool, Context(exclude=context.exclude))
        related = self.cooccurrence.recommend(user_id, self.pool, context)
        scores: dict[str, float] = {}
        for part, share in ((popular, self.popularity_share), (related, 1 - self.popularity_share)):
            if not part:
                continue
            top = part[0][1] or 1.0
            for item, score in part:
                scores[item] = scores.get(item, 0.0) + share * score / top
        return top_k(scores, k)
