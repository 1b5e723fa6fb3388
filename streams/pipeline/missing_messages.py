"""Messages the consumer never delivered, read back from Kafka before their batch runs.

Kafka hands a consumer each partition in offset order, but a rebalance can lose messages on the
way: Faust drops what was fetched while the group changed and, after seeking back to the committed
offsets, may resume past some of them; a commit can run ahead of what was processed. Redis knows
the last offset counted per partition, so a batch that starts beyond the next one, or has a hole
inside, shows what is missing. Those offsets are read back and put into the batch before the
message that follows them. A range without a record (a transaction marker, a compacted log) reads
back empty and costs one read. Once a batch with the messages read back is written, Redis counts
them like any other; acknowledged to the consumer as well, they let its commits move on.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, Mapping, Sequence

from aiokafka import ConsumerRecord
from faust.types import Message as FaustMessage

from streams.log_positions import Position, missing_ranges, source_of
from streams.online_metrics import OnlineMetrics
from streams.outbox import Message

log = logging.getLogger(__name__)
# More missing than this is not a rebalance's loss but positions from another log (Redis restored
# from an old backup, say): reading it all into one batch could exhaust the worker's memory.
MAX_READ_BACK = 100_000

ReadRanges = Callable[[Mapping[tuple[str, int], tuple[int, int]]], Awaitable[dict[tuple[str, int], list]]]


class MissingMessages:
    """``read``: (topic, partition) -> (first, last offset) to the records found, in offset order.
    ``acknowledge``: tells the consumer a message read back is done, so its commits move past it."""

    def __init__(self, read: ReadRanges, metrics: OnlineMetrics,
                 acknowledge: Callable[[Message], object] = lambda message: None):
        self.read = read
        self.metrics = metrics
        self.acknowledge = acknowledge

    async def __call__(self, messages: Sequence[Message],
                       counted: dict[str, Position]) -> tuple[Sequence[Message], list[Message]]:
        """``messages`` with the missing ones in place, and those alone."""
        missing = missing_ranges(messages, counted)
        if not missing:
            return messages, []
        described = ", ".join(f"{source} {first}-{last}"
                              for source, ranges in missing.items() for first, last in ranges)
        if sum(last - first + 1 for ranges in missing.values() for first, last in ranges) > MAX_READ_BACK:
            log.error("more than %d offsets are missing before this batch (%s): not read back", MAX_READ_BACK,
                      described)
            return messages, []
        spans = {_partition(source): (ranges[0][0], ranges[-1][1]) for source, ranges in missing.items()}
        found = await self.read(spans)
        recovered = [as_message(record) for records in found.values() for record in records
                     if any(first <= record.offset <= last for first, last in missing[source_of(record)])]
        if recovered:
            self.metrics.recovered_messages.inc(len(recovered))
            log.warning("messages the consumer did not deliver, read back from Kafka: %d (%s)", len(recovered),
                        described)
        return in_log_order(messages, recovered), recovered


def _partition(source: str) -> tuple[str, int]:
    topic, partition = source.rsplit(":", 1)
    return topic, int(partition)


def as_message(record: ConsumerRecord) -> FaustMessage:
    return FaustMessage(record.topic, record.partition, record.offset, record.timestamp / 1000,
                        record.timestamp_type, record.headers, record.key, record.value, None)


def in_log_order(messages: Sequence[Message], recovered: list[Message]) -> list[Message]:
    """``messages`` with each recovered one placed before the first message of its partition at a
    higher offset (at the end if none is)."""
    pending: dict[str, list[Message]] = {}
    for message in sorted(recovered, key=lambda m: m.offset):
        pending.setdefault(source_of(message), []).append(message)
    merged: list[Message] = []
    for message in messages:
        waiting = pending.get(source_of(message), [])
        while waiting and waiting[0].offset < message.offset:
            merged.append(waiting.pop(0))
        merged.append(message)
    merged += [message for waiting in pending.values() for message in waiting]
    return merged
