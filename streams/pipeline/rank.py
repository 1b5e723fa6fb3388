"""Rank each touched customer's lists with the model in use; save their features with the list
they were served, which later actions are attributed to."""

from __future__ import annotations

import logging
import time
from typing import MutableMapping

from models.base import NO_CONTEXT, Context
from streams import redis_keys
from streams.online_metrics import OnlineMetrics
from streams.pipeline.batch import BatchState, Ranked, ServingModel, TouchedCustomer
from streams.recommendation_store import RecommendationList, build_list
from streams.session_features import ServedList, dump_features
from streams.settings import Settings

log = logging.getLogger(__name__)
SLOT_KEYS = {"buyagain": redis_keys.buy_again, "discover": redis_keys.discover}
POPULAR_REFRESH_SECONDS = 5.0


class Rank:
    def __init__(self, settings: Settings, model: ServingModel, sessions: MutableMapping[bytes, bytes],
                 metrics: OnlineMetrics):
        self.k = settings.recs_count
        self.model = model
        self.sessions = sessions
        self.metrics = metrics
        self._popular_written_at = 0.0

    def forget(self) -> None:
        """A new model's popular list is due at once."""
        self._popular_written_at = 0.0

    def __call__(self, batch: BatchState) -> None:
        for user_id, touched in batch.touched.items():
            touched.features.positions.update(touched.positions)
            try:
                listing, slots = self._lists(user_id, touched, batch)
            except Exception:  # the customer keeps their current lists; their events are applied
                log.exception("ranking %s failed", user_id)
                self.metrics.events({"ranking_failed": 1})
            else:
                experiment = self.model.experiment.name if listing.arm else ""
                touched.features.remember_served(ServedList(listing.rec_id, listing.model_version, listing.items,
                                                            touched.answered_ts, arm=listing.arm or "",
                                                            experiment=experiment))
                batch.lists.append(listing)
                batch.slot_lists += slots
                if experiment:
                    batch.experiment_outcome(experiment, "lists", user_id)
            self.sessions[user_id.encode()] = dump_features(touched.features)
        batch.popular = self._popular_if_due()
        if batch.popular is not None:
            batch.ranked.append(Ranked(batch.popular, self.model.recommender, NO_CONTEXT, "recs"))

    def _lists(self, user_id: str, touched: TouchedCustomer, batch: BatchState) -> tuple[RecommendationList, list]:
        features, model = touched.features, self.model
        context = Context(recent=features.recent_items, cart=features.cart, segment=features.segment,
                          exclude=features.recommendation_exclusions(), bought=features.bought_items,
                          bought_times=features.bought_times)
        recommender, version, arm = model.for_customer(user_id)
        lists = {"recs": recommender.recommend(user_id, self.k, context),
                 **recommender.slot_lists(user_id, self.k, context)}
        # A customer's events may arrive out of order across the clicks and purchases topics.
        # The list reflects everything up to their newest event; for attribution it was served
        # in answer to this batch's events, which the shopper's next actions follow.
        built = {slot: build_list(user_id, scored, version, features.last_seen, arm=arm or None)
                 for slot, scored in lists.items()}
        batch.ranked += [Ranked(slot_list, recommender, context, slot) for slot, slot_list in built.items()]
        listing = built.pop("recs")
        return listing, [(SLOT_KEYS[slot](user_id), slot_list) for slot, slot_list in built.items()]

    def _popular_if_due(self) -> RecommendationList | None:
        now = time.monotonic()
        if now - self._popular_written_at < POPULAR_REFRESH_SECONDS:
            return None
        scored = self.model.recommender.recommend("", self.k)
        if not scored:  # nothing popular yet: try again with the next batch, not in 5 s
            return None
        self._popular_written_at = now
        return build_list("", scored, self.model.version)
