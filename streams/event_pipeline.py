"""What the worker does with a batch of consumed messages.

validate -> dead-letter the bad ones -> update session features -> teach the
model -> recompute each touched user's list -> one pipelined Redis write.
Faust specifics stay in ``streams.app``; this class sees plain messages and
talks to Kafka through an ``Outbox``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import MutableMapping, Sequence

from models.base import Interaction, Recommender
from models.hit_rate_monitor import HitRateMonitor
from models.offline_lists import OfflineListsWithSession
from models.online_segments import OnlineSegments
from models.purchase_drift import PurchaseDrift
from streams import redis_keys
from streams.attribution import attribute
from streams.crash_loop import judge, next_attempts
from streams.dead_letter_log import DeadLetters, DirectDeadLetters
from streams.event_archive import EventArchive
from streams.events import (
    ClickEvent,
    DriftAlert,
    FeedbackEvent,
    ProductRecord,
    PurchaseEvent,
    RetrainRequest,
    UserEvent,
    encode_event,
)
from streams.log_positions import Position, advanced, is_behind, source_of
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
from streams.version_fence import fence_of

log = logging.getLogger(__name__)
SLOT_KEYS = {"buyagain": redis_keys.buy_again, "discover": redis_keys.discover}
# How strongly each action says "I want this item".
ACTION_WEIGHTS = {"view": 0.1, "add_to_cart": 0.3, "remove_from_cart": 0.0, "purchase": 1.0}
POPULAR_REFRESH_SECONDS = 5.0
# An item missing from the Redis catalog is looked up again after this long (its record may be on its way).
CATALOG_RETRY_SECONDS = 60.0


@dataclass
class TouchedCustomer:
    features: SessionFeatures
    answered_ts: float  # newest event time of the batch's events
    kafka_ts: float  # earliest Kafka time of the batch's events
    positions: dict[str, Position] = field(default_factory=dict)  # "topic:partition" -> last applied


@dataclass
class BatchState:
    """What one batch accumulates before it is written.

    ``counted`` holds, per topic partition, the position up to which Redis already has the
    effects (counters, feedback, dead letters): a batch redelivered after a crash folds what the
    session features lack, but its effects go to a scratch batch that is never written."""

    counted: dict[str, Position] = field(default_factory=dict)
    scratch: bool = False
    skipped: dict[tuple[str, int, int], int] = field(default_factory=dict)  # crash-loop breaker's verdict
    counters: Counter = field(default_factory=Counter)
    refused: list[tuple[Message, str]] = field(default_factory=list)  # to dead-letter, with the reason
    summaries: BatchSummaries = field(default_factory=BatchSummaries)
    touched: dict[str, TouchedCustomer] = field(default_factory=dict)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    retrain: RetrainRequest | None = None
    alerts: list[DriftAlert] = field(default_factory=list)
    prequential: Counter = field(default_factory=Counter)
    segments: dict[str, str] = field(default_factory=dict)
    segment_moves: Counter = field(default_factory=Counter)

    def effects_of(self, message: Message) -> "BatchState":
        """Where ``message``'s effects go: this batch, or for one already counted, a scratch batch."""
        if not is_behind(message, self.counted.get(source_of(message))):
            return self
        return BatchState(scratch=True)

    def positions_after(self, messages: Sequence[Message]) -> dict[str, Position]:
        """Each topic partition's position once the batch is written. Never moved back: a
        partition read again from its start stays counted."""
        last: dict[str, Position] = {}
        for message in messages:
            source = source_of(message)
            last[source] = advanced(last.get(source, self.counted.get(source)), message)
        return last

    def touch(self, user_id: str, features: SessionFeatures, ts: float, kafka_ts: float,
              message: Message | None = None) -> None:
        known = self.touched.get(user_id)
        if known is None:
            known = self.touched[user_id] = TouchedCustomer(features, ts, kafka_ts)
        known.features = features
        known.answered_ts, known.kafka_ts = max(known.answered_ts, ts), min(known.kafka_ts, kafka_ts)
        if message is not None:
            source = source_of(message)
            known.positions[source] = advanced(known.positions.get(source), message)


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
        dead_letters: DeadLetters | None = None,
    ):
        self.settings = settings
        self.validator = EventValidator(settings)
        self.recommender = recommender
        self.writer = writer
        self.sessions = sessions
        self.outbox = outbox
        self.dead_letters = dead_letters or DirectDeadLetters(outbox)
        self.model_version = model_version
        self.fence = fence_of(model_version)
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
        self.fence = fence_of(recommender.name)
        self._popular_written_at = 0.0
        self._catalog_lookups.clear()
        self.hit_rate_monitor.reset()

    async def handle_user_events(self, messages: Sequence[Message]) -> None:
        await self._guarded(messages, self._user_events)

    async def handle_products(self, messages: Sequence[Message]) -> None:
        await self._guarded(messages, self._products)

    async def _guarded(self, messages: Sequence[Message], process) -> None:
        """``process`` the batch under the crash-loop breaker (``streams.crash_loop``): after a
        crash, one message at a time, and without a message that stopped workers too often."""
        group, sources = self.settings.app_id, sorted({source_of(message) for message in messages})
        counted, recorded = await self.writer.read_progress(group, sources)
        attempts = next_attempts(messages, counted, recorded)
        if attempts:
            await self.writer.record_crash_attempts(group, attempts)
        verdict = judge(attempts)
        if not verdict.one_at_a_time:
            await process(messages, BatchState(counted=counted))
            return
        self.metrics.crash_loop_skips.inc(len(verdict.skipped))
        for message in messages:
            source = source_of(message)
            if source in attempts:  # a crash from here on starts the next attempt at this message
                moved_on = attempts[source]._replace(offset=message.offset)
                await self.writer.record_crash_attempts(group, {source: moved_on})
            counted, _ = await self.writer.read_progress(group, [source])
            await process([message], BatchState(counted=counted, skipped=verdict.skipped))

    async def _user_events(self, messages: Sequence[Message], batch: "BatchState") -> None:
        valid = []
        for message in messages:
            event = self._validate(message, batch)
            if event is not None:
                valid.append((message, event))
        # Clicks and purchases arrive on different topics, so a batch may hold an order
        # before the clicks that led to it: restore event-time order within the batch.
        valid.sort(key=lambda pair: pair[1].ts)
        await self._learn_catalog_of(item for _, event in valid for item in touched_items(event))
        for message, event in valid:
            try:
                self._fold(message, event, batch)
            except Exception as exc:  # one event's failure is that event's: the batch goes on
                log.exception("event at %s[%d]@%d failed", message.topic, message.partition, message.offset)
                self._refuse(message, f"processing failed: {type(exc).__name__}: {exc}", batch.effects_of(message))
        lists, slot_lists = self._rank(batch)
        batch.segment_moves.pop("", None)
        await self.dead_letters.send(batch.refused, batch.counted)
        written = await self.writer.write(lists=lists, slot_lists=slot_lists, popular=self._popular_if_due(),
                                          counters=batch.counters, segments=batch.segments,
                                          prequential=batch.prequential, segment_moves=batch.segment_moves,
                                          fence=self.fence, positions=(self.settings.app_id,
                                                                       batch.positions_after(messages)))
        if not written:  # this worker is still on an older version than the one published
            self.metrics.fenced_batches.inc()
        self._count_lists(lists, batch)
        for item in batch.feedback:
            self.metrics.feedback_seen(item.action, item.model_version, item.segment, item.attribution)
            batch.summaries.feedback(item.action, item.model_version, item.segment)
            await self.outbox.feedback(item)
        if batch.retrain is not None:
            await self.outbox.retrain_request(batch.retrain)
        for alert in batch.alerts:
            await self.outbox.drift_alert(alert)
        await self._finish_batch(batch.counters, batch.summaries)

    def _fold(self, message: Message, event: UserEvent, batch: "BatchState") -> None:
        """Apply one valid event to its customer's features and every side effect hung off them.

        Two questions are kept apart. Do the session features have the event already (its
        offset, or its id at another offset)? Has Redis counted it already (``batch.effects_of``)?
        After a crash either may hold without the other; each event is folded once and counted once."""
        known = batch.touched.get(event.user_id)
        features = known.features if known else self._load(event.user_id)
        effects = batch.effects_of(message)
        redelivered = features is not None and is_behind(message, features.positions.get(source_of(message)))
        if redelivered or (features is not None and event.event_id in features.recent_event_ids):
            effects.counters[f"{'valid' if redelivered else 'duplicate'}:{message.topic}"] += 1
            # The features have the event; Redis may not have its list yet.
            batch.touch(event.user_id, features, event.ts, message.timestamp)
            return
        context = list(features.recent_items) if features else []
        earned = attribute(features, event, self.settings.attribution_window_seconds)
        last_served = features.served[-1] if features and features.served else None
        segment_before = features.segment if features else ""
        if self.settings.prequential_scoring and isinstance(event, PurchaseEvent) \
                and isinstance(self.recommender, OfflineListsWithSession):
            score_purchase(self.recommender, features, event, effects.prequential, self.settings.session_gap_seconds)
        features, _ = update_session_features(
            features, event, self.settings.session_gap_seconds, self.settings.session_recent_items
        )
        if isinstance(event, PurchaseEvent):
            self._fold_purchase(event, features, earned, last_served, segment_before, effects)
            batch.segments.update(effects.segments)
        self._learn(event, context)
        self._archive(event)
        # Counted only once nothing can fail: a dead-lettered event is never also counted valid.
        effects.counters[f"valid:{message.topic}"] += 1
        effects.feedback += earned
        batch.touch(event.user_id, features, event.ts, message.timestamp, message)

    def _fold_purchase(self, event: PurchaseEvent, features: SessionFeatures, earned: list[FeedbackEvent],
                       last_served: ServedList | None, segment_before: str, batch: "BatchState") -> None:
        if last_served is not None:
            hits = [f for f in earned if f.action == "purchase"]
            batch.summaries.purchase(hits[0].model_version if hits else last_served.model_version,
                                     segment_before, hit=bool(hits))
            batch.retrain = self._watch_hit_rate(bool(hits), event.ts) or batch.retrain
        # What segment:{user_id} held: the online segment, else the one publishing wrote.
        previous = segment_before or self.offline_segments.get(event.user_id, "")
        batch.segments[event.user_id] = self._update_segment(features, event, batch.alerts)
        if batch.segments[event.user_id] != previous:
            batch.segment_moves[previous] -= 1
            batch.segment_moves[batch.segments[event.user_id]] += 1

    def _rank(self, batch: "BatchState") -> tuple[list[RecommendationList], list[tuple[str, RecommendationList]]]:
        """Each touched customer's lists; their features are saved with the list they were served."""
        lists, slot_lists = [], []
        for user_id, touched in batch.touched.items():
            features = touched.features
            features.positions.update(touched.positions)
            try:
                scored = self.recommender.recommend(
                    user_id, features.recent_items, self.settings.recs_count, features.recommendation_exclusions(),
                    cart=features.cart, segment=features.segment,
                )
                slots = self._slot_lists(user_id, features)
            except Exception:  # the customer keeps their current lists; their events are applied
                log.exception("ranking %s failed", user_id)
                self.metrics.count_events({"ranking_failed": 1})
                self.sessions[user_id.encode()] = dump_features(features)
                continue
            # A customer's events may arrive out of order across the clicks and purchases topics.
            # The list reflects everything up to their newest event; for attribution it was served
            # in answer to this batch's events, which the shopper's next actions follow.
            listing = build_list(user_id, scored, self.model_version, features.last_seen)
            features.remember_served(ServedList(listing.rec_id, listing.model_version, listing.items,
                                                touched.answered_ts))
            self.sessions[user_id.encode()] = dump_features(features)
            lists.append(listing)
            slot_lists += slots
        return lists, slot_lists

    def _count_lists(self, lists: list[RecommendationList], batch: "BatchState") -> None:
        written_at = time.time()
        for listing in lists:
            touched = batch.touched[listing.user_id]
            freshness = written_at - touched.kafka_ts
            self.metrics.list_written(listing.model_version, touched.features.segment, freshness)
            batch.summaries.list_written(listing.model_version, touched.features.segment, freshness)

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

    async def _products(self, messages: Sequence[Message], batch: "BatchState") -> None:
        products = []
        for message in messages:
            effects = batch.effects_of(message)
            record = self._validate(message, batch)
            if not isinstance(record, ProductRecord):
                continue
            try:
                self.recommender.learn_item(record.item_id, record.category, record.price)
                self._archive(record)
            except Exception as exc:  # one record's failure is that record's
                log.exception("product at %s[%d]@%d failed", message.topic, message.partition, message.offset)
                self._refuse(message, f"processing failed: {type(exc).__name__}: {exc}", effects)
                continue
            effects.counters[f"valid:{message.topic}"] += 1
            self._catalog_lookups[record.item_id] = math.inf
            products.append((record.item_id, encode_event(record)))
        await self.dead_letters.send(batch.refused, batch.counted)
        await self.writer.write(products=products, counters=batch.counters,
                                positions=(self.settings.app_id, batch.positions_after(messages)))
        await self._finish_batch(batch.counters, BatchSummaries())

    async def _finish_batch(self, counters: Counter[str], summaries: BatchSummaries) -> None:
        self.metrics.count_events(counters)
        summaries.events(counters)
        await self.outbox.online_summaries(summaries.records())
        if self.archive is not None and self.archive.due:
            await asyncio.to_thread(self.archive.flush)

    def _archive(self, event) -> None:
        if self.archive is not None:
            self.archive.add(event)

    def _validate(self, message: Message, batch: "BatchState"):
        crashes = batch.skipped.get((message.topic, message.partition, message.offset))
        try:
            if crashes:
                raise InvalidEvent(f"{crashes} workers stopped while processing it (crash-loop breaker)")
            return self.validator.validate(message.topic, message.value, key=message.key)
        except InvalidEvent as exc:
            self._refuse(message, str(exc), batch.effects_of(message))
            return None

    def _refuse(self, message: Message, reason: str, effects: "BatchState") -> None:
        """Count ``message`` as a dead letter and queue it to be sent before the batch is written,
        unless Redis counted it before a crash: then it was sent too."""
        effects.counters[f"dead_letter:{message.topic}"] += 1
        effects.refused.append((message, reason))

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
