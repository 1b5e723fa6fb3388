"""``POST /events``: clicks, purchases and catalog records sent over HTTP, checked with the worker's
own validator and produced to Kafka exactly as the platform would, keyed by the contract.

The route writes, so it needs the API key (``API_KEY``); without one configured it is off.
A 202 means every accepted event is in Kafka (acknowledged by all in-sync replicas).
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.connections import aiokafka_options
from streams.events import event_key
from streams.settings import Settings
from streams.validation import EventValidator, InvalidEvent

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
MAX_EVENTS_BODY_BYTES = 4 << 20
KAFKA_TIMEOUT_SECONDS = 10.0
_decode_batch = msgspec.json.Decoder(list[msgspec.Raw]).decode
_decode_fields = msgspec.json.Decoder(dict).decode


class IntakeUnavailable(RuntimeError):
    """Kafka did not take the batch; nothing was acknowledged, the caller may send it again."""


def authorised(settings: Settings, headers) -> bool:
    """The request carries ``Authorization: Bearer <API_KEY>`` or ``X-API-Key``; compared in
    constant time so the key cannot be guessed byte by byte from response times."""
    if not settings.api_key:
        return False
    offered = headers.get("x-api-key") or ""
    bearer = headers.get("authorization") or ""
    if bearer[:7].lower() == "bearer ":
        offered = bearer[7:]
    return hmac.compare_digest(offered.encode(), settings.api_key.encode())


def kind_of(fields: dict, settings: Settings) -> str:
    """The topic an event belongs on, from the fields that only its kind has."""
    if "lines" in fields:
        return settings.topic_purchases
    if "title" in fields:
        return settings.topic_products
    return settings.topic_clicks


class EventIntake:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.validator = EventValidator(settings)
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    def split(self, body: bytes) -> tuple[list[tuple[str, bytes, bytes]], list[dict]]:
        """(topic, key, value) of each valid event, and each refusal's index and reason.
        Raises ``InvalidEvent`` when the body is not a JSON array of at most the allowed size."""
        try:
            raws = _decode_batch(body)
        except (msgspec.MsgspecError, RecursionError) as exc:
            raise InvalidEvent(f"the body must be a JSON array of events ({type(exc).__name__})") from None
        if len(raws) > MAX_EVENTS_PER_REQUEST:
            raise InvalidEvent(f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(raws)}")
        valid, refused = [], []
        for index, raw in enumerate(raws):
            try:
                valid.append(self._checked(bytes(raw)))
            except InvalidEvent as exc:
                refused.append({"index": index, "reason": str(exc)})
        return valid, refused

    def _checked(self, value: bytes) -> tuple[str, bytes, bytes]:
        try:
            fields = _decode_fields(value)
        except (msgspec.MsgspecError, RecursionError):
            raise InvalidEvent("an event must be a JSON object") from None
        topic = kind_of(fields, self.settings)
        return topic, event_key(self.validator.validate(topic, value)), value

    async def produce(self, events: list[tuple[str, bytes, bytes]]) -> None:
        producer = await self._started()
        try:
            sent = [await producer.send(topic, value=value, key=key) for topic, key, value in events]
            await asyncio.wait_for(asyncio.gather(*sent), KAFKA_TIMEOUT_SECONDS)
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            raise IntakeUnavailable(type(exc).__name__) from None

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                options = {k: v for k, v in aiokafka_options(self.settings).items() if v is not None}
                producer = AIOKafkaProducer(**options, acks="all", linger_ms=5,
                                            request_timeout_ms=int(KAFKA_TIMEOUT_SECONDS * 1000))
                try:
                    await asyncio.wait_for(producer.start(), KAFKA_TIMEOUT_SECONDS)
                except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                    await producer.stop()
                    raise IntakeUnavailable(type(exc).__name__) from None
                self._producer = producer
            return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
