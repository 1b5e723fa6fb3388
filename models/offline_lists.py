"""Serving the trainer's output in the stream: precomputed lists re-ranked with live session context."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Collection, Sequence

from models.base import NO_CONTEXT, STATIC_LISTS, Context, Interaction, Recommender, Scored, top_k
from models.explanations import (BOUGHT_BEFORE, BOUGHT_WITH, DAY, DISCOVER, SIMILAR_TO, TRENDING, Reason,
                                 bought_before, date_to_day, popular)

FLOOR = 1e-3  # fill-in items score below anything personal
TRENDING_REASON = Reason(TRENDING)
NO_EVIDENCE = Reason(BOUGHT_BEFORE, "")
# 1 / rank and FLOOR / rank, computed once (lists are re-ranked for every event), for lists
# far longer than any a model keeps.
RANK_WEIGHTS = tuple(1.0 / (rank + 1) for rank in range(10_000))
FILL_WEIGHTS = tuple(FLOOR / (rank + 1) for rank in range(10_000))


@dataclass(frozen=True)
class RerankWeights:
    """How much each kind of live context moves the offline list (settings ``RERANK_*_WEIGHT``).

    The defaults were chosen on Online Retail's validation window, before the test
    window (``bench/tune_reranking.py``): category and price affinity did not help
    there, so they start at 0; a shop with a real category tree should tune them.
    """

    session: float = 0.3  # neighbours of the items the shopper touched, most recent first
    cart: float = 0.3  # items bought together with what is in the cart
    category: float = 0.0  # boost x (1 + category * share of the session's recent items in the item's category)
    price: float = 0.0  # boost x (1 + price * closeness of the item's price to the session's prices)
    recency_decay: float = 0.7  # each older context item counts this much less
    context_items: int = 5
    price_spread: float = 0.7  # log-price distance at which the price affinity has fallen to 61%


@dataclass
class ItemInfo:
    category: str = ""
    price: float | None = None


class OfflineListsWithSession(Recommender):
    """The customer's offline list (rank-weighted), re-ranked by the live session:

    * offline neighbours of the recent items (an item the model never saw stands in
      with its category's popular items, once the catalog has told its category);
    * complements (co-purchases) of the items in the cart;
    * affinity to the categories and the price level of the recent items;
    * popular items fill the list, those of the customer's segment for customers the
      offline model never saw, plus the popular items of the session's main category.

    >>> model = OfflineListsWithSession({"u1": [("a", .9), ("b", .5)]}, {"x": [("c", 1.0)]}, [("p", 1.0)], "v1")
    >>> [item for item, _ in model.recommend("u1", 3)]
    ['a', 'b', 'p']
    >>> [item for item, _ in model.recommend("new", 2, Context(recent=["x"]))]
    ['c', 'p']
    >>> model.learn_item("y", category="mugs", price=3.0)  # a new product from the catalog
    >>> model.category_popular["mugs"] = [("m1", 1.0), ("m2", 0.5)]
    >>> [item for item, _ in model.recommend("new", 2, Context(recent=["y"]))]
    ['m1', 'm2']
    """

    capabilities = frozenset({STATIC_LISTS})

    def __init__(self, user_lists: dict[str, Scored], similar_items: dict[str, Scored], popular: Scored,
                 version: str, weights: RerankWeights = RerankWeights(),
                 segment_popular: dict[str, Scored] | None = None, complements: dict[str, Scored] | None = None,
                 items: dict[str, ItemInfo] | None = None, category_popular: dict[str, Scored] | None = None,
                 buy_again: dict[str, Scored] | None = None, discover: dict[str, Scored] | None = None,
                 offline_reasons: dict[str, dict[str, Sequence[Reason]]] | None = None,
                 recs_unbought: bool = False):
        self.user_lists = user_lists
        # The trainer had the recs list show unbought items only (customers who never take an
        # item twice): re-ranking keeps it so, as it keeps the discover list.
        self.recs_unbought = recs_unbought
        self.buy_again = buy_again or {}
        self.discover = discover
        self.similar_items = similar_items
        self.popular = popular
        self.name = version
        self.weights = weights
        self.segment_popular = segment_popular or {}
        self.complements = complements or {}
        self.items = items or {}
        self.category_popular = category_popular or {}
        # slot -> user_id -> the reasons of the offline list's items, in its order
        self.offline_reasons = offline_reasons or {}

    def learn_one(self, x: Interaction) -> None:
        """Offline lists change only with a new model version."""

    def learn_item(self, item_id: str, category: str | None = None, price: float | None = None) -> None:
        known = self.items.setdefault(item_id, ItemInfo())
        if category:
            known.category = category
        if price is not None and price > 0:
            known.price = price

    def static_list(self, user_id: str, k: int) -> Scored:
        """The offline list alone, as the trainer published it (popular for unknown users)."""
        return list(self.user_lists.get(user_id, self.popular))[:k]

    def recommend(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> Scored:
        exclude = self._unbought_only(user_id, context) if self.recs_unbought else context.exclude
        return self._rerank(self.user_lists.get(user_id, ()), user_id, k, context, exclude)

    def slot_lists(self, user_id: str, k: int, context: Context = NO_CONTEXT) -> dict[str, Scored]:
        """``buyagain``: the offline buy-again list and what was bought since, less ``exclude``;
        ``discover``: the offline discovery list re-ranked like ``recommend``, never showing an
        item the customer bought."""
        if self.discover is None:
            return {}
        exclude, bought = context.exclude, context.bought
        earlier = self.buy_again.get(user_id, ())
        again: dict[str, float] = defaultdict(float)
        for rank, item in enumerate(reversed(bought)):
            again[item] += 1.0 / (rank + 1)
        for rank, (item, _) in enumerate(earlier):
            again[item] += 1.0 / (rank + 1)
        return {"buyagain": top_k(again, k, exclude),
                "discover": self._rerank(self.discover.get(user_id, ()), user_id, k, context,
                                         self._unbought_only(user_id, context))}

    def _unbought_only(self, user_id: str, context: Context) -> set[str]:
        """What a list of unbought items leaves out: the context's exclusions, what the customer
        bought in the stream and their published buy-again items."""
        earlier = self.buy_again.get(user_id, ())
        return set(context.exclude).union(context.bought, (item for item, _ in earlier))

    def _rerank(self, base: Scored, user_id: str, k: int, context: Context, exclude: Collection[str]) -> Scored:
        cart, segment = context.cart, context.segment
        w = self.weights
        scores: dict[str, float] = defaultdict(float)
        for (item, _), weight in zip(base, RANK_WEIGHTS):
            scores[item] += weight
        votes = self._votes(context.recent)
        for item, vote in votes:
            pull = w.session * vote
            for other, similarity in self._neighbours(item):
                scores[other] += pull * similarity
        for item in cart:
            for other, similarity in self.complements.get(item, ()):
                scores[other] += w.cart * similarity
        fallback = self.popular
        if segment and user_id not in self.user_lists:
            fallback = self.segment_popular.get(segment, self.popular)
        categories = self._category_shares(votes)
        main_category = max(categories, key=categories.get) if categories else ""
        for filler in (self.category_popular.get(main_category, ()), fallback):
            for (item, _), weight in zip(filler, FILL_WEIGHTS):
                if item not in scores:
                    scores[item] = weight
        # Affinities scale scores, so they reorder within the personal part and within the fill-in.
        if categories and w.category:
            for item in scores:
                scores[item] *= 1.0 + w.category * categories.get(self._category(item), 0.0)
        price_level = self._price_level(votes) if w.price else None
        if price_level is not None:
            for item in scores:
                price = self._price(item)
                if price is not None:
                    closeness = math.exp(-0.5 * ((math.log(price) - price_level) / w.price_spread) ** 2)
                    scores[item] *= 1.0 + w.price * closeness
        return top_k(scores, k, exclude)

    def explain(self, user_id: str, items: Sequence[str], context: Context = NO_CONTEXT,
                slot: str = "recs") -> list[Reason]:
        """Each item's reason is its largest pull in ``_rerank``: its place on the offline list
        (with the trainer's reason), a recent item's neighbours, a cart item's complements, else
        the popular list that filled it in. Buy-again items give their orders and last date."""
        if slot == "buyagain":
            published = dict(zip((item for item, _ in self.buy_again.get(user_id, ())),
                                 self.offline_reasons.get("buyagain", {}).get(user_id, ())))
            return [_bought_reason(published.get(item), context.bought_times.get(item)) for item in items]
        base = (self.discover or {}).get(user_id, ()) if slot == "discover" else self.user_lists.get(user_id, ())
        wanted = set(items)
        best = self._offline_pulls(base, self.offline_reasons.get(slot, {}).get(user_id), wanted)
        w = self.weights
        for recent, vote in self._votes(context.recent):
            _stronger(best, wanted, self._neighbours(recent), w.session * vote, Reason(SIMILAR_TO, recent))
        for cart_item in context.cart:
            _stronger(best, wanted, self.complements.get(cart_item, ()), w.cart, Reason(BOUGHT_WITH, cart_item))
        # Fill-ins: the segment's popular items for a customer the published model never saw, else the
        # shop's (or the session's category's) best sellers.
        in_segment = {item for item, _ in self.segment_popular.get(context.segment, ())} \
            if context.segment and user_id not in self.user_lists else set()
        in_segment_reason = popular(context.segment)
        return [best[item][1] if item in best else in_segment_reason if item in in_segment else TRENDING_REASON
                for item in items]

    def _offline_pulls(self, base: Scored, reasons: Sequence[Reason] | None, wanted: set[str]) -> dict:
        reasons = reasons or [Reason(DISCOVER, self.name)] * len(base)
        return {item: (weight, reason) for (item, _), weight, reason in zip(base, RANK_WEIGHTS, reasons)
                if item in wanted}

    def _votes(self, recent: Sequence[str]) -> list[tuple[str, float]]:
        """Recent items with their weight: 1 for the latest, ``recency_decay`` times less for each older one."""
        w = self.weights
        return [(item, w.recency_decay ** age) for age, item in enumerate(reversed(recent[-w.context_items:]))]

    def _neighbours(self, item: str) -> Scored:
        known = self.similar_items.get(item)
        if known is not None:
            return known
        # An item the model never saw: its category's best sellers, at half a neighbour's weight.
        return [(other, 0.5 / (rank + 1)) for rank, (other, _) in
                enumerate(self.category_popular.get(self._category(item), ()))]

    def _category(self, item: str) -> str:
        info = self.items.get(item)
        return info.category if info else ""

    def _price(self, item: str) -> float | None:
        info = self.items.get(item)
        return info.price if info else None

    def _category_shares(self, votes: list[tuple[str, float]]) -> dict[str, float]:
        shares: dict[str, float] = defaultdict(float)
        for item, vote in votes:
            category = self._category(item)
            if category:
                shares[category] += vote
        total = sum(shares.values())
        return {category: share / total for category, share in shares.items()} if total else {}

    def _price_level(self, votes: list[tuple[str, float]]) -> float | None:
        """Vote-weighted mean log price of the recent items, None without prices."""
        priced = [(math.log(price), vote) for item, vote in votes if (price := self._price(item)) is not None]
        weight = sum(vote for _, vote in priced)
        return sum(p * vote for p, vote in priced) / weight if weight else None


def _stronger(best: dict, wanted: set[str], neighbours: Scored, pull: float, reason: Reason) -> None:
    """Record ``reason`` for the listed items it pulls harder than their reason so far."""
    for other, similarity in neighbours:
        if other in wanted:
            strength = pull * similarity
            known = best.get(other)
            if known is None or known[0] < strength:
                best[other] = (strength, reason)


def _bought_reason(published: Reason | None, since: tuple[int, float] | None) -> Reason:
    """Orders and last date of a buy-again item: the published history's, plus what the worker saw since."""
    if since is None:  # most items: nothing bought since the publish
        return published if published is not None else NO_EVIDENCE
    times, last = since
    if published is not None and published.code == BOUGHT_BEFORE and published.evidence:
        earlier, _, date = published.evidence.partition("|")
        times += int(earlier)
        last = max(last, date_to_day(date) * DAY)
    return bought_before(times, last)
