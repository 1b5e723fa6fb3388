"""Everything a worker publishes: dead letters, feedback, retrain requests, drift alerts, online summaries.

The pipeline talks to an ``Outbox``; ``KafkaOutbox`` sends to the topics the
settings name. Sends are handed to Faust's producer, which batches them.
"""

from __future__ import annotations

import logging
from typing import Protocol

import faust

from streams.dead_letters import dead_letter_headers
from streams.events import DriftAlert, FeedbackEvent, RetrainRequest, encode_event
from streams.settings import Settings

log = logging.getLogger(__name__)


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float  # when the message reached Kafka (seconds)


class Outbox(Protocol):
    async def dead_letter(self, message: Message, reason: str) -> None: ...

    async def feedback(self, event: FeedbackEvent) -> None: ...

    async def retrain_request(self, request: RetrainRequest) -> None: ...

    async def drift_alert(self, alert: DriftAlert) -> None: ...

    async def online_summaries(self, records: list[tuple[bytes, bytes]]) -> None: ...


RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


class KafkaOutbox:
    def __init__(self, app: faust.App, settings: Settings):
        self.dead_letters = app.topic(settings.topic_dead_letters, **RAW)
        self.feedback_topic = app.topic(settings.topic_feedback, **RAW)
        self.retrain_topic = app.topic(settings.topic_retrain_requests, **RAW)
        self.drift_topic = app.topic(settings.topic_drift_alerts, **RAW)
        self.summaries_topic = app.topic(settings.topic_online_metrics, **RAW)

    async def dead_letter(self, message: Message, reason: str) -> None:
        await self.dead_letters.send(
            key=message.key,
            value=message.value or b"",
            headers=dead_letter_headers(reason, message.topic, message.partition, message.offset),
        )

    async def feedback(self, event: FeedbackEvent) -> None:
        await self.feedback_topic.send(key=event.user_id.encode(), value=encode_event(event))

    async def retrain_request(self, request: RetrainRequest) -> None:
        log.warning("purchase hit-rate of %s fell from %.3f to %.3f: requesting a retrain",
                    request.model_version, request.baseline_hit_rate, request.current_hit_rate)
        await self.retrain_topic.send(key=b"retrain", value=encode_event(request))

    async def drift_alert(self, alert: DriftAlert) -> None:
        log.warning("purchase drift: typical %s went from %.2f to %.2f", alert.statistic, alert.before, alert.now)
        await self.drift_topic.send(key=alert.statistic.encode(), value=encode_event(alert))

    async def online_summaries(self, records: list[tuple[bytes, bytes]]) -> None:
        for key, value in records:
            await self.summaries_topic.send(key=key, value=value)
