"""What the worker does with a batch of consumed messages.

validate -> dead-letter the bad ones -> update session features -> teach the
model -> recompute each touched user's list -> one pipelined Redis write.
Faust specifics stay in ``streams.app``; this class sees plain messages and
talks to Kafka through an ``Outbox``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import MutableMapping, Sequence

from models.base import Interaction, Recommender
from models.hit_rate_monitor import HitRateMonitor
from models.offline_lists import OfflineListsWithSession
from models.online_segments import OnlineSegments
from models.purchase_drift import PurchaseDrift
from streams import redis_keys
from streams.attribution import attribute
from streams.event_archive import EventArchive
from streams.events import ClickEvent, DriftAlert, FeedbackEvent, ProductRecord, PurchaseEvent, RetrainRequest, encode_event
from streams.online_metrics import OnlineMetrics
from streams.online_summaries import BatchSummaries
from streams.outbox import Message, Outbox
from streams.prequential import score_purchase
from streams.recommendation_store import RecommendationList, RecommendationWriter, build_list
from streams.session_features import (
    ServedList,
    SessionFeatures,
    dump_features,
    load_features,
    order_value,
    touched_items,
    update_session_features,
)
from streams.settings import Settings
from streams.validation import EventValidator, InvalidEvent

SLOT_KEYS = {"buyagain": redis_keys.buy_again, "discover": redis_keys.discover}
# How strongly each action says "I want this item".
ACTION_WEIGHTS = {"view": 0.1, "add_to_cart": 0.3, "remove_from_cart": 0.0, "purchase": 1.0}
POPULAR_REFRESH_SECONDS = 5.0
# An item missing from the Redis catalog is looked up again after this long (its record may be on its way).
CATALOG_RETRY_SECONDS = 60.0


class EventPipeline:
    def __init__(
        self,
        settings: Settings,
        recommender: Recommender,
        writer: RecommendationWriter,
        sessions: MutableMapping[bytes, bytes],
        outbox: Outbox,
        model_version: str,
        archive: EventArchive | None = None,
        metrics: OnlineMetrics | None = None,
        hit_rate_monitor: HitRateMonitor | None = None,
    ):
        self.settings = settings
        self.validator = EventValidator(settings)
        self.recommender = recommender
        self.writer = writer
        self.sessions = sessions
        self.outbox = outbox
        self.model_version = model_version
        self.archive = archive
        self.metrics = metrics or OnlineMetrics()
        self.hit_rate_monitor = hit_rate_monitor or HitRateMonitor()
        self.online_segments = OnlineSegments(settings.online_segments_algorithm)
        self.offline_segments: dict[str, str] = {}
        self.purchase_drift = PurchaseDrift()
        self._popular_written_at = 0.0
        self._catalog_lookups: dict[str, float] = {}  # item -> when last missing; inf once found

    def use_model(self, recommender: Recommender, offline_segments: dict[str, str] | None = None) -> None:
        """Switch models between two batches; the next list written carries the new version.
        ``offline_segments`` (user_id -> name) teach the online clusters their names."""
        self.recommender = recommender
        self.offline_segments = offline_segments or {}
        self.model_version = recommender.name
        self._popular_written_at = 0.0
        self._catalog_lookups.clear()
        self.hit_rate_monitor.reset()

    async def handle_user_events(self, messages: Sequence[Message]) -> None:
        counters: Counter[str] = Counter()
        summaries = BatchSummaries()
        # features, newest event time of the batch's events, earliest Kafka time in the batch
        touched: dict[str, tuple[SessionFeatures, float, float]] = {}
        feedback: list[FeedbackEvent] = []
        retrain: RetrainRequest | None = None
        alerts: list[DriftAlert] = []
        prequential: Counter[str] = Counter()
        segments: dict[str, str] = {}
        segment_moves: Counter[str] = Counter()
        valid = []
        for message in messages:
            event = await self._validate(message, counters)
            if event is not None:
                valid.append((message, event))
        # Clicks and purchases arrive on different topics, so a batch may hold an order
        # before the clicks that led to it: restore event-time order within the batch.
        valid.sort(key=lambda pair: pair[1].ts)
        await self._learn_catalog_of(item for _, event in valid for item in touched_items(event))
        for message, event in valid:
            known = touched.get(event.user_id)
            features = known[0] if known else self._load(event.user_id)
            context = list(features.recent_items) if features else []
            earned = attribute(features, event, self.settings.attribution_window_seconds)
            last_served = features.served[-1] if features and features.served else None
            segment_before = features.segment if features else ""
            redelivered = features is not None and event.event_id in features.recent_event_ids
            if self.settings.prequential_scoring and isinstance(event, PurchaseEvent) \
                    and isinstance(self.recommender, OfflineListsWithSession) and not redelivered:
                score_purchase(self.recommender, features, event, prequential, self.settings.session_gap_seconds)
            features, is_new = update_session_features(
                features, event, self.settings.session_gap_seconds, self.settings.session_recent_items
            )
            if not is_new:
                counters[f"duplicate:{message.topic}"] += 1
                # A redelivery after a failed write: the features have the event, Redis may not.
                touched.setdefault(event.user_id, (features, event.ts, message.timestamp))
                continue
            counters[f"valid:{message.topic}"] += 1
            feedback += earned
            if isinstance(event, PurchaseEvent):
                if last_served is not None:
                    hits = [f for f in earned if f.action == "purchase"]
                    summaries.purchase(hits[0].model_version if hits else last_served.model_version,
                                       segment_before, hit=bool(hits))
                    retrain = self._watch_hit_rate(bool(hits), event.ts) or retrain
                # What segment:{user_id} held: the online segment, else the one publishing wrote.
                previous = segment_before or self.offline_segments.get(event.user_id, "")
                segments[event.user_id] = self._update_segment(features, event, alerts)
                if segments[event.user_id] != previous:
                    segment_moves[previous] -= 1
                    segment_moves[segments[event.user_id]] += 1
            self._archive(event)
            self._learn(event, context)
            touched[event.user_id] = (features, max(event.ts, known[1] if known else event.ts),
                                      min(message.timestamp, known[2] if known else message.timestamp))

        lists, slot_lists = [], []
        for user_id, (features, answered_ts, _) in touched.items():
            scored = self.recommender.recommend(
                user_id, features.recent_items, self.settings.recs_count, features.recommendation_exclusions(),
                cart=features.cart, segment=features.segment,
            )
            # A customer's events may arrive out of order across the clicks and purchases topics.
            # The list reflects everything up to their newest event; for attribution it was served
            # in answer to this batch's events, which the shopper's next actions follow.
            listing = build_list(user_id, scored, self.model_version, features.last_seen)
            features.remember_served(ServedList(listing.rec_id, listing.model_version, listing.items, answered_ts))
            self.sessions[user_id.encode()] = dump_features(features)
            lists.append(listing)
            slot_lists += self._slot_lists(user_id, features)
        segment_moves.pop("", None)
        await self.writer.write(lists=lists, slot_lists=slot_lists, popular=self._popular_if_due(), counters=counters,
                                segments=segments,
                                prequential=prequential, segment_moves=segment_moves)
        written_at = time.time()
        for listing in lists:
            features, _, kafka_ts = touched[listing.user_id]
            freshness = written_at - kafka_ts
            self.metrics.list_written(listing.model_version, features.segment, freshness)
            summaries.list_written(listing.model_version, features.segment, freshness)
        for item in feedback:
            self.metrics.feedback_seen(item.action, item.model_version, item.segment, item.attribution)
            summaries.feedback(item.action, item.model_version, item.segment)
            await self.outbox.feedback(item)
        if retrain is not None:
            await self.outbox.retrain_request(retrain)
        for alert in alerts:
            await self.outbox.drift_alert(alert)
        await self._finish_batch(counters, summaries)

    def _slot_lists(self, user_id: str, features: SessionFeatures) -> list[tuple[str, RecommendationList]]:
        """The customer's buy-again and discover lists, re-ranked like the main list: (Redis key, list)."""
        slots = self.recommender.slot_lists(
            user_id, features.recent_items, self.settings.recs_count, features.recommendation_exclusions(),
            cart=features.cart, segment=features.segment, bought=features.bought_items,
        )
        return [(SLOT_KEYS[slot](user_id), build_list(user_id, scored, self.model_version, features.last_seen))
                for slot, scored in slots.items()]

    def _update_segment(self, features: SessionFeatures, event: PurchaseEvent, alerts: list[DriftAlert]) -> str:
        """Where a customer's online segment is updated: on each of their purchases."""
        cluster = self.online_segments.learn_predict_one(features.customer.features())
        offline = self.offline_segments.get(event.user_id)
        if offline is not None:
            self.online_segments.observe_offline(cluster, offline)
        features.segment = self.online_segments.name(cluster)
        change = self.purchase_drift.update(order_value(event))
        if change is not None:
            alerts.append(DriftAlert("order_value", round(change[0], 2), round(change[1], 2), event.ts))
        return features.segment

    def _watch_hit_rate(self, hit: bool, ts: float) -> RetrainRequest | None:
        monitor = self.hit_rate_monitor
        dropped = monitor.update(hit)
        self.metrics.hit_rate.labels(model_version=self.model_version).set(monitor.hit_rate)
        if not dropped:
            return None
        self.metrics.retrain_requests.inc()
        baseline, now = monitor.last_drop
        return RetrainRequest(self.model_version, round(baseline, 4), round(now, 4), monitor.seen, ts)

    async def handle_products(self, messages: Sequence[Message]) -> None:
        counters: Counter[str] = Counter()
        products = []
        for message in messages:
            record = await self._validate(message, counters)
            if isinstance(record, ProductRecord):
                counters[f"valid:{message.topic}"] += 1
                self.recommender.learn_item(record.item_id, record.category, record.price)
                self._catalog_lookups[record.item_id] = math.inf
                self._archive(record)
                products.append((record.item_id, encode_event(record)))
        await self.writer.write(products=products, counters=counters)
        await self._finish_batch(counters, BatchSummaries())

    async def _finish_batch(self, counters: Counter[str], summaries: BatchSummaries) -> None:
        self.metrics.count_events(counters)
        summaries.events(counters)
        await self.outbox.online_summaries(summaries.records())
        if self.archive is not None and self.archive.due:
            await asyncio.to_thread(self.archive.flush)

    def _archive(self, event) -> None:
        if self.archive is not None:
            self.archive.add(event)

    async def _validate(self, message: Message, counters: Counter[str]):
        try:
            return self.validator.validate(message.topic, message.value)
        except InvalidEvent as exc:
            await self.outbox.dead_letter(message, str(exc))
            counters[f"dead_letter:{message.topic}"] += 1
            return None

    async def _learn_catalog_of(self, items) -> None:
        """Teach the model the catalog record of items this worker has not met yet. Records
        live in Redis: each worker consumes only its own partitions of the products topic."""
        now = time.monotonic()
        wanted = {item for item in items if now - self._catalog_lookups.get(item, -math.inf) > CATALOG_RETRY_SECONDS}
        if not wanted:
            return
        records = await self.writer.read_products(wanted)
        for item in wanted:
            record = records.get(item)
            if record is None:
                self._catalog_lookups[item] = now
            else:
                self._catalog_lookups[item] = math.inf
                self.recommender.learn_item(item, record.category, record.price)

    def _load(self, user_id: str) -> SessionFeatures | None:
        raw = self.sessions.get(user_id.encode())
        return load_features(raw) if raw else None

    def _learn(self, event, context: list[str]) -> None:
        kind = event.type if isinstance(event, ClickEvent) else "purchase"
        weight = ACTION_WEIGHTS[kind]
        for item in touched_items(event):
            self.recommender.learn_one(Interaction(event.user_id, item, event.ts, weight, context))

    def _popular_if_due(self) -> RecommendationList | None:
        now = time.monotonic()
        if now - self._popular_written_at < POPULAR_REFRESH_SECONDS:
            return None
        scored = self.recommender.recommend("", (), self.settings.recs_count)
        if not scored:  # nothing popular yet: try again with the next batch, not in 5 s
            return None
        self._popular_written_at = now
        return build_list("", scored, self.model_version)
