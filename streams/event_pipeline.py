"""What the worker does with a batch of consumed messages.

validate -> dead-letter the bad ones -> update session features -> teach the
model -> recompute each touched user's list -> one pipelined Redis write.
Faust specifics stay in ``streams.agents``; this class sees plain messages.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Awaitable, Callable, MutableMapping, Protocol, Sequence

from models.base import Interaction, Recommender
from models.hit_rate_monitor import HitRateMonitor
from models.offline_lists import OfflineListsWithSession
from models.online_segments import OnlineSegments
from models.purchase_drift import PurchaseDrift
from streams.event_archive import EventArchive
from streams.prequential import score_purchase
from streams.attribution import attribute
from streams.events import (
    ClickEvent,
    DriftAlert,
    FeedbackEvent,
    ProductRecord,
    PurchaseEvent,
    RetrainRequest,
    encode_event,
)
from streams.online_metrics import OnlineMetrics
from streams.recommendation_store import RecommendationList, RecommendationWriter, build_list
from streams.session_features import (
    ServedList,
    SessionFeatures,
    dump_features,
    load_features,
    touched_items,
    update_session_features,
)
from streams.settings import Settings
from streams.validation import EventValidator, InvalidEvent

# How strongly each action says "I want this item".
ACTION_WEIGHTS = {"view": 0.1, "add_to_cart": 0.3, "remove_from_cart": 0.0, "purchase": 1.0}
POPULAR_REFRESH_SECONDS = 5.0


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # when the message reached Kafka (seconds)


SendDeadLetter = Callable[[Message, str], Awaitable[None]]
SendFeedback = Callable[[FeedbackEvent], Awaitable[None]]
SendRetrainRequest = Callable[[RetrainRequest], Awaitable[None]]
SendDriftAlert = Callable[[DriftAlert], Awaitable[None]]


class EventPipeline:
    def __init__(
        self,
        settings: Settings,
        recommender: Recommender,
        writer: RecommendationWriter,
        sessions: MutableMapping[bytes, bytes],
        send_dead_letter: SendDeadLetter,
        model_version: str,
        archive: EventArchive | None = None,
        send_feedback: SendFeedback | None = None,
        metrics: OnlineMetrics | None = None,
        send_retrain_request: SendRetrainRequest | None = None,
        hit_rate_monitor: HitRateMonitor | None = None,
        send_drift_alert: SendDriftAlert | None = None,
    ):
        self.settings = settings
        self.validator = EventValidator(settings)
        self.recommender = recommender
        self.writer = writer
        self.sessions = sessions
        self.send_dead_letter = send_dead_letter
        self.model_version = model_version
        self.archive = archive
        self.send_feedback = send_feedback
        self.metrics = metrics or OnlineMetrics()
        self.send_retrain_request = send_retrain_request
        self.hit_rate_monitor = hit_rate_monitor or HitRateMonitor()
        self.send_drift_alert = send_drift_alert
        self.online_segments = OnlineSegments(settings.online_segments_algorithm)
        self.offline_segments: dict[str, str] = {}
        self.purchase_drift = PurchaseDrift()
        self._popular_written_at = 0.0

    def use_model(self, recommender: Recommender, offline_segments: dict[str, str] | None = None) -> None:
        """Switch models between two batches; the next list written carries the new version.
        ``offline_segments`` (user_id -> name) teach the online clusters their names."""
        self.recommender = recommender
        self.offline_segments = offline_segments or {}
        self.model_version = recommender.name
        self._popular_written_at = 0.0
        self.hit_rate_monitor.reset()

    async def handle_user_events(self, messages: Sequence[Message]) -> None:
        counters: Counter[str] = Counter()
        touched: dict[str, tuple[SessionFeatures, float, float]] = {}  # features, event time, Kafka time
        feedback: list[FeedbackEvent] = []
        retrain: RetrainRequest | None = None
        alerts: list[DriftAlert] = []
        prequential: Counter[str] = Counter()
        segments: dict[str, str] = {}
        valid = []
        for message in messages:
            event = await self._validate(message, counters)
            if event is not None:
                valid.append((message, event))
        # Clicks and purchases arrive on different topics, so a batch may hold an order
        # before the clicks that led to it: restore event-time order within the batch.
        valid.sort(key=lambda pair: pair[1].ts)
        for message, event in valid:
            known = touched.get(event.user_id)
            features = known[0] if known else self._load(event.user_id)
            context = list(features.recent_items) if features else []
            earned = attribute(features, event, self.settings.attribution_window_seconds)
            known_lists = bool(features and features.served)
            redelivered = features is not None and event.event_id in features.recent_event_ids
            if isinstance(event, PurchaseEvent) and isinstance(self.recommender, OfflineListsWithSession) \
                    and not redelivered:
                score_purchase(self.recommender, features, event, prequential, self.settings.session_gap_seconds)
            features, is_new = update_session_features(
                features, event, self.settings.session_gap_seconds, self.settings.session_recent_items
            )
            if not is_new:
                counters[f"duplicate:{message.topic}"] += 1
                continue
            counters[f"valid:{message.topic}"] += 1
            feedback += earned
            if isinstance(event, PurchaseEvent):
                if known_lists:
                    retrain = self._watch_hit_rate(any(f.action == "purchase" for f in earned), event.ts) or retrain
                segments[event.user_id] = self._update_segment(features, event, alerts)
            self._archive(event)
            self._learn(event, context)
            touched[event.user_id] = (features, max(event.ts, known[1] if known else 0.0),
                                      min(message.timestamp, known[2] if known else message.timestamp))

        lists = []
        for user_id, (features, event_ts, _) in touched.items():
            scored = self.recommender.recommend(
                user_id, features.recent_items, self.settings.recs_count, features.recommendation_exclusions()
            )
            listing = build_list(user_id, scored, self.model_version, event_ts)
            features.remember_served(ServedList(listing.rec_id, listing.model_version, listing.items, event_ts))
            self.sessions[user_id.encode()] = dump_features(features)
            lists.append(listing)
        await self.writer.write(lists=lists, popular=self._popular_if_due(), counters=counters, segments=segments,
                                prequential=prequential)
        written_at = time.time()
        for listing in lists:
            features, _, kafka_ts = touched[listing.user_id]
            self.metrics.list_written(listing.model_version, features.segment, written_at - kafka_ts)
        for item in feedback:
            self.metrics.feedback_seen(item.action, item.model_version, item.segment, item.attribution)
            if self.send_feedback is not None:
                await self.send_feedback(item)
        if retrain is not None and self.send_retrain_request is not None:
            await self.send_retrain_request(retrain)
        for alert in alerts:
            if self.send_drift_alert is not None:
                await self.send_drift_alert(alert)
        self._count(counters)
        await self._flush_archive_if_due()

    def _update_segment(self, features: SessionFeatures, event: PurchaseEvent, alerts: list[DriftAlert]) -> str:
        """Where a customer's online segment is updated: on each of their purchases."""
        value = sum(line.quantity * line.unit_price for line in event.lines)
        features.customer.add_order(event.ts, len(event.lines), sum(line.quantity for line in event.lines), value)
        cluster = self.online_segments.learn_predict_one(features.customer.features())
        offline = self.offline_segments.get(event.user_id)
        if offline is not None:
            self.online_segments.observe_offline(cluster, offline)
        features.segment = self.online_segments.name(cluster)
        change = self.purchase_drift.update(value)
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
                self._archive(record)
                products.append((record.item_id, encode_event(record)))
        await self.writer.write(products=products, counters=counters)
        self._count(counters)
        await self._flush_archive_if_due()

    def _count(self, counters: Counter[str]) -> None:
        self.metrics.count_events(counters)

    def _archive(self, event) -> None:
        if self.archive is not None:
            self.archive.add(event)

    async def _flush_archive_if_due(self) -> None:
        if self.archive is not None and self.archive.due:
            await asyncio.to_thread(self.archive.flush)

    async def _validate(self, message: Message, counters: Counter[str]):
        try:
            return self.validator.validate(message.topic, message.value)
        except InvalidEvent as exc:
            await self.send_dead_letter(message, str(exc))
            counters[f"dead_letter:{message.topic}"] += 1
            return None

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
        self._popular_written_at = now
        scored = self.recommender.recommend("", (), self.settings.recs_count)
        return build_list("", scored, self.model_version) if scored else None
