"""Reading chosen offsets of topic partitions back from Kafka, with a consumer of its own (no group:
it commits nothing and joins no rebalance).

The end a broker reports is not used to know when to stop: Tansu answers the first offset of the
partition's last record batch, short of its true end. A range is done once the consumer's position
has passed it; a range that holds no record (a log shorter than it, a transaction marker, a
compacted log) ends with the timeout or the position.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from streams.connections import aiokafka_options
from streams.settings import Settings

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition)


async def read_ranges(settings: Settings, ranges: Mapping[Partition, tuple[int, int]],
                      timeout_seconds: float) -> dict[Partition, list[ConsumerRecord]]:
    """The records of each partition from the first to the last offset of its range, both included,
    in offset order; within ``timeout_seconds``, so a partition may come back short."""
    found: dict[Partition, list[ConsumerRecord]] = {partition: [] for partition in ranges}
    if not ranges:
        return found
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False, auto_offset_reset="none",
                                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
    wanted = {TopicPartition(*partition): span for partition, span in ranges.items()}
    try:
        await consumer.start()
        consumer.assign(list(wanted))
        for tp, (first, _) in wanted.items():
            consumer.seek(tp, first)
        deadline = time.monotonic() + timeout_seconds
        while wanted and time.monotonic() < deadline:
            fetched = await consumer.getmany(*wanted, timeout_ms=int(1000 * (deadline - time.monotonic())) + 1)
            for tp, records in fetched.items():
                first, last = wanted[tp]
                found[tp.topic, tp.partition] += [record for record in records if first <= record.offset <= last]
            for tp in [tp for tp, (_, last) in wanted.items() if await consumer.position(tp) > last]:
                consumer.pause(tp)
                del wanted[tp]
        if wanted:
            log.info("records not read back within %.0f s: %s", timeout_seconds,
                     ", ".join(f"{tp.topic}[{tp.partition}] {first}-{last}" for tp, (first, last) in wanted.items()))
    except KafkaError as exc:  # out of range, or no answer: the records are not there
        log.info("reading records back from Kafka failed (%s)", exc)
    finally:
        await consumer.stop()
    return found
