"""The worker's background work: following published models, the dashboard feed's timer, and
what is flushed on shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import faust
import msgspec

from streams.agent_failures import exit_on_failure
from streams.dashboard_feed import DashboardFeed
from streams.dead_letter_log import KafkaDeadLetterTail
from streams.event_pipeline import EventPipeline
from streams.model_artifacts import ArtifactError, ArtifactStore
from streams.experiments import CURRENT, Experiment, decode_experiment
from streams.model_updates import follow_model_updates, load_version
from streams.recommendation_store import RETRYABLE
from streams.pipeline.batch import ArmModel
from streams.online_summaries import WINDOW_STEP_SECONDS
from streams.settings import Settings
from streams.topology import Topology

log = logging.getLogger(__name__)


async def use_version(settings: Settings, pipeline: EventPipeline, version: str) -> None:
    """Serve model ``version`` (or ``latest``) from the next batch on; a broken one is not served."""
    try:
        version = ArtifactStore(settings.artifact_dir).resolve(version)
    except ArtifactError:
        return  # nothing trained yet: the streaming model serves
    if version == pipeline.model.version:
        return  # loading is costly: the lists would be the same
    try:
        loaded = await asyncio.to_thread(load_version, settings, version)
    except Exception as exc:  # a broken version is not served; the current model goes on
        log.error("model version %s cannot be loaded (%s: %s); still recommending with %s",
                  version, type(exc).__name__, exc, pipeline.model.version)
        return
    if loaded is not None and loaded[0].name != pipeline.model.version:
        pipeline.use_model(*loaded)
        # The model lives until the next version: keeping its millions of objects out of the
        # collector's full scans removes pauses of 100-200 ms from the event path. A replaced
        # model holds no reference cycles, so reference counting still frees it.
        gc.freeze()
        log.info("now recommending with model %s", version)


EXPERIMENT_CHECK_SECONDS = 2.0


class ExperimentFollower:
    """Keeps the pipeline's experiment arms in step with Redis (``streams.experiments``): every arm's
    model loaded, ``latest`` following each publish; a broken arm stops nothing, it is retried."""

    def __init__(self, settings: Settings, pipeline: EventPipeline):
        self.settings = settings
        self.pipeline = pipeline
        self._serving: tuple | None = None  # (experiment record, each arm's resolved version)

    async def check(self) -> None:
        try:
            experiment = decode_experiment(await self.pipeline.writer.client.get(CURRENT))
        except RETRYABLE:  # Redis is away: the batches wait for it, and so does this
            return
        except msgspec.MsgspecError as exc:
            log.error("%s in Redis is not an experiment (%s); the current arms go on", CURRENT, exc)
            return
        if experiment is None or not experiment.running:
            if self.pipeline.model.experiment is not None:
                self.pipeline.use_experiment(None, {})
                log.info("experiment ended; every customer is served by %s", self.pipeline.model.version)
            self._serving = None
            return
        try:
            versions = [ArtifactStore(self.settings.artifact_dir).resolve(arm.version) for arm in experiment.arms]
        except ArtifactError as exc:
            log.error("experiment %s cannot run: %s", experiment.name, exc)
            return
        if self._serving == (experiment, versions, self.pipeline.model.version):
            return
        try:
            arms = await asyncio.to_thread(self._load_arms, experiment, versions)
        except Exception as exc:  # the previous arms (or none) go on serving
            log.error("experiment %s cannot run: %s: %s", experiment.name, type(exc).__name__, exc)
            return
        self.pipeline.use_experiment(experiment, arms)
        self._serving = (experiment, versions, self.pipeline.model.version)
        log.info("experiment %s: arms %s", experiment.name,
                 ", ".join(f"{arm.name}={version}" for arm, version in zip(experiment.arms, versions)))

    def _load_arms(self, experiment: Experiment, versions: list[str]) -> dict[str, ArmModel]:
        serving = self.pipeline.model
        loaded: dict[tuple, ArmModel] = {}
        for arm, version in zip(experiment.arms, versions):
            key = (version, tuple(sorted(arm.settings.items())))
            if key not in loaded:
                if version == serving.version and not arm.settings:
                    recommender = serving.recommender
                else:
                    recommender = load_version(arm.serving_settings(self.settings), version)[0]
                loaded[key] = ArmModel(recommender, version)
        return {arm.name: loaded[(version, tuple(sorted(arm.settings.items())))]._replace(arm=arm.name)
                for arm, version in zip(experiment.arms, versions)}


def register_tasks(app: faust.App, settings: Settings, topology: Topology, pipeline: EventPipeline,
                   feed: DashboardFeed, dead_letter_tail: KafkaDeadLetterTail) -> None:
    pipeline.model_ready.clear()

    async def serve(version: str) -> None:
        await use_version(settings, pipeline, version)
        pipeline.model_ready.set()  # loaded, or nothing (loadable) published: events flow

    @app.task
    @exit_on_failure("following model updates")
    async def follow_models():
        await follow_model_updates(settings, serve)

    experiments = ExperimentFollower(settings, pipeline)

    @app.timer(EXPERIMENT_CHECK_SECONDS)
    @exit_on_failure("following experiments")
    async def follow_experiments():
        await experiments.check()

    @app.timer(WINDOW_STEP_SECONDS)
    @exit_on_failure("publishing the dashboard feed")
    async def publish_dashboard_feed():
        start, end = topology.online_window.table.window.earliest(time.time())
        await feed.publish(topology.online_window.items().now(), start, end)

    @app.on_before_shutdown.connect
    async def close_outputs(app, **kwargs):
        # The consumer has stopped: what is buffered is everything processed.
        if pipeline.archive is not None:
            await asyncio.to_thread(pipeline.archive.flush)
        await dead_letter_tail.stop()
