"""The crash-loop breaker: a message that keeps killing workers is dead-lettered and skipped.

An exception in one event is that event's alone (the pipeline catches it). What is left is a
worker that dies outright on a message: out of memory, a crash in native code, a watchdog's
kill. Its batch is redelivered and would kill the next worker too, for ever. So before each
batch the worker records in Redis, per source partition, the first offset Redis has not
counted and how many attempts in a row started there:

* the first attempt processes the batch as usual;
* later attempts process it one message at a time, each written to Redis before the next, so
  the next crash starts the following attempt at the very message that caused it;
* the ``limit``-th attempt at one message dead-letters it and goes on without it.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

from streams.log_positions import Position, is_behind, source_of
from streams.outbox import Message

log = logging.getLogger(__name__)
ATTEMPTS_BEFORE_SKIPPING = 3


class Attempt(NamedTuple):
    offset: int
    count: int

    def encode(self) -> str:
        return f"{self.offset}:{self.count}"

    @classmethod
    def decode(cls, raw: bytes | str) -> "Attempt":
        offset, count = (raw.decode() if isinstance(raw, bytes) else raw).split(":")
        return cls(int(offset), int(count))


def next_attempts(messages: Sequence[Message], counted: dict[str, Position],
                  recorded: dict[str, Attempt]) -> dict[str, Attempt]:
    """Per source partition of ``messages``, the attempt this batch makes at its first message
    Redis has not counted: one more than ``recorded`` if that started at the same offset."""
    firsts: dict[str, int] = {}
    for message in messages:
        source = source_of(message)
        if not is_behind(message, counted.get(source)):
            firsts[source] = min(message.offset, firsts.get(source, message.offset))
    attempts = {}
    for source, offset in firsts.items():
        before = recorded.get(source)
        attempts[source] = Attempt(offset, before.count + 1 if before and before.offset == offset else 1)
    return attempts


class Verdict(NamedTuple):
    one_at_a_time: bool
    skipped: dict[tuple[str, int, int], int]  # (topic, partition, offset) -> attempts it survived


def judge(attempts: dict[str, Attempt], limit: int = ATTEMPTS_BEFORE_SKIPPING) -> Verdict:
    skipped = {}
    for source, attempt in attempts.items():
        if attempt.count >= limit:
            topic, partition = source.rsplit(":", 1)
            skipped[(topic, int(partition), attempt.offset)] = attempt.count - 1
            log.error("the message at %s offset %d was being processed when %d workers stopped: it is "
                      "dead-lettered and skipped", source, attempt.offset, attempt.count - 1)
    return Verdict(any(attempt.count > 1 for attempt in attempts.values()), skipped)
