"""Run a batch under the crash-loop breaker (``streams.crash_loop``): after a crash, one message at a
time, and without a message that stopped workers too often. First a record handed over twice is
kept once, and messages the consumer did not deliver are read back
(``streams.pipeline.missing_messages``)."""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

from streams.crash_loop import Attempt, judge, next_attempts
from streams.log_positions import Position, distinct, source_of
from streams.online_metrics import OnlineMetrics
from streams.outbox import Message
from streams.pipeline.batch import BatchState
from streams.pipeline.missing_messages import MissingMessages
from streams.recommendation_store import RecommendationWriter

Process = Callable[[BatchState], Awaitable[None]]


class CrashGuard:
    def __init__(self, group: str, writer: RecommendationWriter, metrics: OnlineMetrics,
                 missing: MissingMessages | None = None):
        self.group = group
        self.writer = writer
        self.metrics = metrics
        self.missing = missing

    async def __call__(self, messages: Sequence[Message], process: Process) -> None:
        messages = distinct(messages)
        sources = sorted({source_of(message) for message in messages})
        counted, recorded = await self.writer.read_progress(self.group, sources)
        recovered: list[Message] = []
        if self.missing is not None:
            messages, recovered = await self.missing(messages, counted)
        await self._run(messages, counted, recorded, process)
        for message in recovered:
            self.missing.acknowledge(message)

    async def _run(self, messages: Sequence[Message], counted: dict[str, Position], recorded: dict[str, Attempt],
                   process: Process) -> None:
        attempts = next_attempts(messages, counted, recorded)
        if attempts:
            await self.writer.record_crash_attempts(self.group, attempts)
        verdict = judge(attempts)
        if not verdict.one_at_a_time:
            await process(BatchState(messages=messages, counted=counted))
            return
        self.metrics.crash_loop_skips.inc(len(verdict.skipped))
        for message in messages:
            source = source_of(message)
            if source in attempts:  # a crash from here on starts the next attempt at this message
                moved_on = attempts[source]._replace(offset=message.offset)
                await self.writer.record_crash_attempts(self.group, {source: moved_on})
            counted, _ = await self.writer.read_progress(self.group, [source])
            await process(BatchState(messages=[message], counted=counted, skipped=verdict.skipped))
