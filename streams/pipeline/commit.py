"""Commit a batch: its dead letters acknowledged by Kafka first, then everything Redis gets in one
transaction (lists behind the version fence, catalog records, segments, counters and the
positions they include)."""

from __future__ import annotations

from streams.dead_letter_log import DeadLetters
from streams.online_metrics import OnlineMetrics
from streams.pipeline.batch import BatchState, ServingModel
from streams.recommendation_store import RecommendationWriter


class Commit:
    def __init__(self, group: str, model: ServingModel, writer: RecommendationWriter, dead_letters: DeadLetters,
                 metrics: OnlineMetrics):
        self.group = group
        self.model = model
        self.writer = writer
        self.dead_letters = dead_letters
        self.metrics = metrics

    async def __call__(self, batch: BatchState) -> None:
        await self.dead_letters.send(batch.refused, batch.counted)
        batch.segment_moves.pop("", None)  # customers with no segment before are not a segment's size
        written = await self.writer.write(
            lists=batch.lists, slot_lists=batch.slot_lists, popular=batch.popular, products=batch.products,
            counters=batch.counters, segments=batch.segments, prequential=batch.prequential,
            segment_moves=batch.segment_moves, dismissals=batch.dismissals, sessions=batch.session_snapshots,
            experiment_outcomes=batch.experiment_outcomes, fence=self.model.fence,
            positions=(self.group, batch.positions_after()), counted_before=batch.counted)
        if not written:  # this worker is still on an older version than the one published
            self.metrics.fenced_batches.inc()
