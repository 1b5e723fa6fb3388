"""Dead letters sent once, even by a worker that dies between sending them and counting them.

A batch's dead letters are acknowledged by Kafka before Redis records the batch as counted,
and a batch Redis has counted is never dead-lettered again (``streams.pipeline.batch``). One
gap is left: a worker that dies after Kafka acknowledged the dead letters and before Redis
recorded the batch. So before sending, the worker notes in Redis, for each source partition,
the offsets the batch covers and where each dead-letter partition ended. A batch that meets
a note covering offsets Redis has not counted reads the dead-letter topic from the noted
ends and leaves out what is already there: every dead letter names its source offset.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol, Sequence

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import redis_keys
from streams.connections import aiokafka_options
from streams.dead_letters import SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, read_headers
from streams.log_positions import Position, source_of
from streams.outbox import Message, Outbox
from streams.recommendation_store import RedisRetry
from streams.settings import Settings

log = logging.getLogger(__name__)
Refused = tuple[Message, str]  # a message and why it was refused
SCAN_SECONDS = 30.0


class DeadLetterTail(Protocol):
    async def ends(self) -> dict[int, int]:
        """Each dead-letter partition's end offset."""

    async def sources_since(self, ends: dict[int, int]) -> set[tuple[str, int, int]]:
        """(topic, partition, offset) of the source of every dead letter from ``ends`` on."""


@dataclass
class Note:
    first: int
    last: int
    ends: dict[int, int]

    def covers(self, offset: int) -> bool:
        return self.first <= offset <= self.last

    def encode(self) -> str:
        return json.dumps({"first": self.first, "last": self.last, "ends": self.ends})

    @classmethod
    def decode(cls, raw: bytes) -> "Note":
        fields = json.loads(raw)
        return cls(fields["first"], fields["last"], {int(p): int(o) for p, o in fields["ends"].items()})


class DeadLetters(Protocol):
    async def send(self, refused: Sequence[Refused], counted: dict[str, Position]) -> None:
        """Send a batch's dead letters; return once Kafka has them all."""


class DirectDeadLetters:
    """Sends every dead letter it is given: a crash between sending and counting may send one twice."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    async def send(self, refused: Sequence[Refused], counted: dict[str, Position]) -> None:
        for message, reason in refused:
            await self.outbox.dead_letter(message, reason)
        if refused:
            await self.outbox.flush()


class DeadLetterLog:
    def __init__(self, outbox: Outbox, client: aioredis.Redis, tail: DeadLetterTail, group: str,
                 retry: RedisRetry | None = None):
        self.outbox = outbox
        self.client = client
        self.tail = tail
        self.key = redis_keys.dead_letter_notes(group)
        self.retry = retry or RedisRetry()

    async def send(self, refused: Sequence[Refused], counted: dict[str, Position]) -> None:
        """Send ``refused`` (none of which Redis has counted) unless a crashed attempt at the
        same batch already did, and return once Kafka has them all. ``counted``: each source
        partition's position that Redis has counted up to."""
        if not refused:
            return
        by_source: dict[str, list[Refused]] = defaultdict(list)
        for message, reason in refused:
            by_source[source_of(message)].append((message, reason))
        sources = sorted(by_source)
        raw = await self.retry(lambda: self.client.hmget(self.key, sources))
        notes = {source: Note.decode(value) for source, value in zip(sources, raw) if value is not None}
        # A note is open while Redis has not counted its last offset: its batch may have died.
        open_notes = {source: note for source, note in notes.items()
                      if counted.get(source) is None or counted[source][0] < note.last}
        sent = await self._already_sent(open_notes, by_source)
        ends = await self.tail.ends() if len(open_notes) < len(sources) else {}
        updated = {}
        for source, items in by_source.items():
            offsets = [message.offset for message, _ in items]
            note = open_notes.get(source)
            updated[source] = (Note(min(note.first, *offsets), max(note.last, *offsets), note.ends) if note
                               else Note(min(offsets), max(offsets), ends)).encode()
        await self.retry(lambda: self.client.hset(self.key, mapping=updated))
        for message, reason in refused:
            if (message.topic, message.partition, message.offset) not in sent:
                await self.outbox.dead_letter(message, reason)
        await self.outbox.flush()

    async def _already_sent(self, open_notes: dict[str, Note], by_source: dict[str, list[Refused]]):
        relevant = [note for source, note in open_notes.items()
                    if any(note.covers(message.offset) for message, _ in by_source[source])]
        if not relevant:
            return set()
        since: dict[int, int] = {}
        for note in relevant:
            for partition, offset in note.ends.items():
                since[partition] = min(offset, since.get(partition, offset))
        found = await self.tail.sources_since(since)
        log.warning("a batch with dead letters is being redone after a crash: %d of its dead letters were "
                    "already sent and are not sent again",
                    sum((m.topic, m.partition, m.offset) in found for items in by_source.values() for m, _ in items))
        return found


class KafkaDeadLetterTail:
    """Reads the dead-letter topic's end offsets and recent records with a consumer of its own
    (no group: it commits nothing), started on first use."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.topic_dead_letters
        self._consumer: AIOKafkaConsumer | None = None

    async def _partitions(self) -> list[TopicPartition]:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(enable_auto_commit=False, **aiokafka_options(self.settings))
            await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer.topics()  # fetches the cluster's metadata
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]

    async def ends(self) -> dict[int, int]:
        partitions = await self._partitions()
        return {tp.partition: offset for tp, offset in (await self._consumer.end_offsets(partitions)).items()}

    async def sources_since(self, ends: dict[int, int]) -> set[tuple[str, int, int]]:
        partitions = await self._partitions()
        stop = await self._consumer.end_offsets(partitions)
        wanted = [tp for tp in partitions if ends.get(tp.partition, 0) < stop[tp]]
        found: set[tuple[str, int, int]] = set()
        if not wanted:
            return found
        self._consumer.assign(wanted)
        for tp in wanted:
            self._consumer.seek(tp, ends.get(tp.partition, 0))
        remaining = set(wanted)
        deadline = time.monotonic() + SCAN_SECONDS
        while remaining and time.monotonic() < deadline:
            batches = await self._consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    headers = read_headers(record.headers)
                    if SOURCE_TOPIC in headers:
                        found.add((headers[SOURCE_TOPIC], int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET])))
                    if record.offset + 1 >= stop[tp]:
                        remaining.discard(tp)
        if remaining:
            log.warning("the dead-letter topic could not be read to its end in %.0f s: dead letters of a redone "
                        "batch may be sent twice", SCAN_SECONDS)
        return found

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
