"""Emit what a committed batch tells the rest of the platform: feedback, retrain requests and drift
alerts to Kafka, and its facts (lists, feedback, events) to the Prometheus counters and the online
summaries alike."""

from __future__ import annotations

import asyncio
import time

from streams.event_archive import EventArchive
from streams.online_metrics import OnlineMetrics
from streams.outbox import Outbox
from streams.pipeline.batch import BatchState, ServingModel


class Emit:
    def __init__(self, outbox: Outbox, metrics: OnlineMetrics, archive: EventArchive | None, model: ServingModel):
        self.outbox = outbox
        self.metrics = metrics
        self.archive = archive
        self.model = model

    async def __call__(self, batch: BatchState) -> None:
        sinks = (self.metrics, batch.summaries)
        written_at = time.time()
        for listing in batch.lists:
            touched = batch.touched[listing.user_id]
            for sink in sinks:
                sink.list_written(listing.model_version, touched.features.segment, written_at - touched.kafka_ts)
        for item in batch.feedback:
            for sink in sinks:
                sink.feedback(item.action, item.model_version, item.segment, item.attribution)
            await self.outbox.feedback(item)
        for item in batch.clicked_lists:
            for sink in sinks:
                sink.list_clicked(item.model_version, item.segment)
        if batch.retrain is not None:
            await self.outbox.retrain_request(batch.retrain)
        for alert in batch.alerts:
            await self.outbox.drift_alert(alert)
        self._experiment_outcomes(batch)
        for sink in sinks:
            sink.events(batch.counters)
        await self.outbox.online_summaries(batch.summaries.records())
        if self.archive is not None and self.archive.due:
            await asyncio.to_thread(self.archive.flush)

    def _experiment_outcomes(self, batch: BatchState) -> None:
        experiment = self.model.experiment
        for (name, outcome), amounts in batch.experiment_outcomes.items():
            for user_id, amount in amounts.items():
                arm = experiment.arm_of(user_id).name if experiment is not None and experiment.name == name else ""
                self.metrics.experiment_outcomes.labels(experiment=name, arm=arm, outcome=outcome).inc(amount)
