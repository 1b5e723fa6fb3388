"""Dead letters of a batch redone after a crash are sent once: a real broker and a real Redis.

The crashes are placed exactly where a worker can die: after its dead letters reached Kafka
and before Redis counted the batch, and after the note was written but before any was sent.
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer

from streams.connections import aiokafka_options
from streams.dead_letter_log import DeadLetterLog, KafkaDeadLetterTail
from streams.dead_letters import SOURCE_OFFSET, dead_letter_headers, read_headers
from streams.log_positions import Position
from streams.topic_admin import ensure_topics

pytestmark = pytest.mark.integration


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None = b"u1"
    value: bytes | None = b"{not json"
    timestamp: float = 1_700_000_000.0


class ProducerOutbox:
    """Sends dead letters with aiokafka, as the worker's outbox does with Faust's producer."""

    def __init__(self, settings, crash_at: int | None = None):
        self.settings = settings
        self.crash_at = crash_at
        self.producer = AIOKafkaProducer(**aiokafka_options(settings))

    async def dead_letter(self, message, reason):
        if message.offset == self.crash_at:
            raise SystemExit("the worker dies here")
        await self.producer.send(self.settings.topic_dead_letters, message.value, key=message.key,
                                 headers=dead_letter_headers(reason, message.topic, message.partition, message.offset))

    async def flush(self):
        await self.producer.flush()


def dead_letter_offsets(settings) -> Counter:
    consumer = KafkaConsumer(settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None)
    found = Counter(int(read_headers(record.headers)[SOURCE_OFFSET]) for record in consumer)
    consumer.close()
    return found


def refused(topic, *offsets):
    return [(Message(topic, 0, offset), "not JSON") for offset in offsets]


async def attempt(settings, batch, counted, crash_at=None):
    """One worker's attempt at a batch: a fresh outbox, tail and Redis client, as after a restart."""
    outbox = ProducerOutbox(settings, crash_at)
    await outbox.producer.start()
    tail = KafkaDeadLetterTail(settings)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await DeadLetterLog(outbox, client, tail, settings.app_id).send(batch, counted)
    finally:
        await outbox.producer.stop()
        await tail.stop()
        await client.aclose()


def test_dead_letters_of_a_batch_redone_after_a_crash_are_sent_once(stack_settings):
    settings = stack_settings
    ensure_topics(settings)
    topic = settings.topic_clicks

    async def scenario():
        # Sent and acknowledged, then the worker died before Redis counted the batch.
        await attempt(settings, refused(topic, 10, 12), counted={})
        # Redelivered, with one more bad event: only the new one is sent.
        await attempt(settings, refused(topic, 10, 12, 15), counted={})
        # Redis counted that batch; the next batch starts a new note.
        counted = {f"{topic}:0": Position(15, time.time())}
        await attempt(settings, refused(topic, 17), counted)
        # The note is written, then the worker dies before sending anything: the redo sends all.
        with pytest.raises(SystemExit):
            await attempt(settings, refused(topic, 20, 21), counted, crash_at=20)
        await attempt(settings, refused(topic, 20, 21), counted)
        # Another partition of the same topic keeps notes of its own.
        await attempt(settings, [(Message(topic, 1, 10), "not JSON")], counted={})

    asyncio.run(scenario())
    found = dead_letter_offsets(settings)
    assert found == Counter({10: 2, 12: 1, 15: 1, 17: 1, 20: 1, 21: 1}), found  # offset 10 of both partitions
