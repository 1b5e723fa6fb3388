"""Everything a worker publishes: dead letters, feedback, retrain requests, drift alerts, online summaries.

The pipeline talks to an ``Outbox``; ``KafkaOutbox`` sends to the topics the
settings name.
"""

from __future__ import annotations

import logging
from typing import Protocol

import faust

from streams.dead_letters import dead_letter_headers, fitted_value
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

    async def flush(self) -> None:
        """Return once Kafka has acknowledged everything sent so far."""


RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


class KafkaOutbox:
    """Sends through Faust's producer directly: a send only queues the message in the producer's
    batches (Faust's per-topic send would add a future and callbacks per message), and Faust
    flushes the producer before it commits any offset, so nothing is committed unsent."""

    def __init__(self, app: faust.App, settings: Settings):
        self.app = app
        self.settings = settings

    async def _send(self, topic: str, key: bytes | None, value: bytes | None, headers=None) -> None:
        await self.app.producer.send(topic, key, value, None, None, headers)

    async def dead_letter(self, message: Message, reason: str) -> None:
        value, cut = fitted_value(message.value, self.settings.max_dead_letter_bytes)
        key, _ = fitted_value(message.key, 1024)
        headers = dead_letter_headers(reason, message.topic, message.partition, message.offset) + cut
        await self._send(self.settings.topic_dead_letters, key, value, headers)

    async def feedback(self, event: FeedbackEvent) -> None:
        await self._send(self.settings.topic_feedback, event.user_id.encode(), encode_event(event))

    async def retrain_request(self, request: RetrainRequest) -> None:
        log.warning("purchase hit-rate of %s fell from %.3f to %.3f: requesting a retrain",
                    request.model_version, request.baseline_hit_rate, request.current_hit_rate)
        await self._send(self.settings.topic_retrain_requests, b"retrain", encode_event(request))

    async def drift_alert(self, alert: DriftAlert) -> None:
        log.warning("purchase drift: typical %s went from %.2f to %.2f", alert.statistic, alert.before, alert.now)
        await self._send(self.settings.topic_drift_alerts, alert.statistic.encode(), encode_event(alert))

    async def online_summaries(self, records: list[tuple[bytes, bytes]]) -> None:
        for key, value in records:
            await self._send(self.settings.topic_online_metrics, key, value)

    async def flush(self) -> None:
        await self.app.producer.flush()
