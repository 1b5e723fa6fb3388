"""What the worker does with a batch of consumed messages: the stages of ``streams.pipeline``, in order.

Faust specifics stay in ``streams.app``; the pipeline sees plain messages and talks to Kafka
through an ``Outbox`` and to Redis through a ``RecommendationWriter``.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, MutableMapping, Sequence

from models.base import Recommender
from models.hit_rate_monitor import HitRateMonitor
from streams.dead_letter_log import DeadLetters, DirectDeadLetters
from streams.event_archive import EventArchive
from streams.online_metrics import OnlineMetrics
from streams.outbox import Message, Outbox
from streams.experiments import Experiment
from streams.pipeline.batch import ArmModel, BatchState, ServingModel
from streams.pipeline.catalog import Catalog
from streams.pipeline.commit import Commit
from streams.pipeline.crash_guard import CrashGuard
from streams.pipeline.decode import Decode
from streams.pipeline.emit import Emit
from streams.pipeline.explain import Explain
from streams.pipeline.fold import Fold, FoldHook
from streams.pipeline.missing_messages import MissingMessages, ReadRanges
from streams.pipeline.session_snapshot import SnapshotSessions
from streams.pipeline.hooks.archive import Archive
from streams.pipeline.hooks.attribution import Attribution
from streams.pipeline.hooks.dismissals import Dismissals
from streams.pipeline.hooks.experiment_outcomes import ExperimentOutcomes
from streams.pipeline.hooks.learning import Learning
from streams.pipeline.hooks.prequential import PrequentialScoring
from streams.pipeline.hooks.purchase_outcome import PurchaseOutcome
from streams.pipeline.hooks.segments import Segments
from streams.pipeline.products import LearnProducts
from streams.pipeline.rank import Rank
from streams.recommendation_store import RecommendationWriter
from streams.settings import Settings

Stage = Callable[[BatchState], Awaitable[None] | None]


class EventPipeline:
    def __init__(
        self,
        settings: Settings,
        recommender: Recommender,
        writer: RecommendationWriter,
        sessions: MutableMapping[bytes, bytes],
        outbox: Outbox,
        model_version: str,
        archive: EventArchive | None = None,
        metrics: OnlineMetrics | None = None,
        hit_rate_monitor: HitRateMonitor | None = None,
        dead_letters: DeadLetters | None = None,
        read_back: ReadRanges | None = None,
        acknowledge: Callable[[Message], object] = lambda message: None,
    ):
        self.settings = settings
        self.model = ServingModel(recommender, model_version)
        self.writer = writer
        self.sessions = sessions
        self.outbox = outbox
        # Cleared by a worker until it has tried to load the latest published model: lists computed
        # with the streaming model before then would be refused by the version fence.
        self.model_ready = asyncio.Event()
        self.model_ready.set()
        self.archive = archive
        self.metrics = metrics or OnlineMetrics()
        self.hit_rate_monitor = hit_rate_monitor or HitRateMonitor()
        # ``read_back`` reads offsets from Kafka: messages the consumer skipped are recovered with it.
        missing = MissingMessages(read_back, self.metrics, acknowledge) if read_back is not None else None
        self.guard = CrashGuard(settings.app_id, writer, self.metrics, missing)
        self.catalog = Catalog(self.model, writer)
        self.rank = Rank(settings, self.model, sessions, self.metrics)
        commit = Commit(settings.app_id, self.model, writer, dead_letters or DirectDeadLetters(outbox), self.metrics)
        emit = Emit(outbox, self.metrics, archive, self.model)
        self.user_event_stages: list[Stage] = [
            Decode(settings, in_event_time_order=True), self.catalog, Fold(settings, sessions, self._fold_hooks()),
            self.rank, *([Explain(self.metrics)] if settings.explain_lists else []), SnapshotSessions(), commit, emit]
        self.product_stages: list[Stage] = [Decode(settings), LearnProducts(self.model, self.catalog, archive),
                                            commit, emit]

    def _fold_hooks(self) -> list[FoldHook]:
        settings, model = self.settings, self.model
        hooks: list[FoldHook] = [Attribution(settings.attribution_window_seconds)]
        if settings.prequential_scoring:
            hooks.append(PrequentialScoring(model, settings.session_gap_seconds))
        hooks += [PurchaseOutcome(model, self.metrics, self.hit_rate_monitor),
                  Segments(model, settings.online_segments_algorithm), Learning(model),
                  Dismissals(settings.dismiss_days * 86400), ExperimentOutcomes(model)]
        if self.archive is not None:
            hooks.append(Archive(self.archive))
        return hooks

    def use_model(self, recommender: Recommender, offline_segments: dict[str, str] | None = None) -> None:
        """Switch models between two batches; the next list written carries the new version.
        ``offline_segments`` (user_id -> name) teach the online clusters their names."""
        self.model.recommender = recommender
        self.model.version = recommender.name
        self.model.offline_segments = offline_segments or {}
        self.rank.forget()
        self.catalog.forget()
        self.hit_rate_monitor.reset()

    def use_experiment(self, experiment: Experiment | None, arms: dict[str, ArmModel]) -> None:
        """Write each customer's lists with their arm's model from the next batch on (None: no experiment)."""
        self.model.experiment, self.model.arms = experiment, arms
        self.rank.forget()

    async def handle_user_events(self, messages: Sequence[Message]) -> None:
        await self.model_ready.wait()
        await self.guard(messages, self._run(self.user_event_stages))

    async def handle_products(self, messages: Sequence[Message]) -> None:
        await self.model_ready.wait()
        await self.guard(messages, self._run(self.product_stages))

    @staticmethod
    def _run(stages: list[Stage]) -> Callable[[BatchState], Awaitable[None]]:
        async def run(batch: BatchState) -> None:
            for stage in stages:
                done = stage(batch)
                if done is not None:
                    await done
        return run
