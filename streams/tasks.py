"""The worker's background work: following published models, the dashboard feed's timer, and
what is flushed on shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import faust

from streams.agent_failures import exit_on_failure
from streams.dashboard_feed import DashboardFeed
from streams.dead_letter_log import KafkaDeadLetterTail
from streams.event_pipeline import EventPipeline
from streams.model_artifacts import ArtifactError, ArtifactStore
from streams.model_updates import follow_model_updates, load_version
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


def register_tasks(app: faust.App, settings: Settings, topology: Topology, pipeline: EventPipeline,
                   feed: DashboardFeed, dead_letter_tail: KafkaDeadLetterTail) -> None:
    @app.task
    @exit_on_failure("following model updates")
    async def follow_models():
        await follow_model_updates(settings, lambda version: use_version(settings, pipeline, version))

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
