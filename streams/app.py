"""The Faust application: configuration, topics, tables and the agents."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import time
from datetime import timedelta

import faust
import msgspec

from models.session_blend import PopularityCooccurrenceBlend
from streams.connections import async_redis_client, faust_broker_options
from streams.dashboard_feed import DashboardFeed
from streams.dead_letter_log import DeadLetterLog, KafkaDeadLetterTail
from streams.event_archive import EventArchive
from streams.event_pipeline import EventPipeline
from streams.kafka_transport import WorkerApp
from streams.model_artifacts import ArtifactError, ArtifactStore
from streams.model_updates import follow_model_updates, load_version
from streams.online_summaries import (
    WINDOW_SECONDS,
    WINDOW_STEP_SECONDS,
    InvalidSummary,
    add_counts,
    decode_summary,
    summary_counts,
    window_report,
)
from streams import session_store
from streams.outbox import RAW, KafkaOutbox
from streams.recommendation_store import RecommendationWriter, RedisRetry
from streams.session_features import load_features
from streams.settings import Settings
from streams.validation import ID_RULE, valid_id

log = logging.getLogger(__name__)

MODEL_VERSION = "online-popularity-cooccurrence-1"


# Exit status of a worker whose agent failed (sysexits' EX_SOFTWARE): its supervisor restarts it.
EXIT_AGENT_FAILED = 70


def exit_on_failure(name: str):
    """Decorate an agent or task so that a failure ends the worker at once, as a crash would.

    Faust would otherwise restart the agent past the failed batch, and ``take_events``
    acknowledges a batch when its generator closes, so the failed batch would be
    committed unprocessed. Exiting before the event loop runs again leaves it
    uncommitted: the restarted worker receives it again, and anything of it that
    already reached the session changelog is recognised by event id.
    """

    def decorate(body):
        @functools.wraps(body)
        async def run(*args):
            try:
                await body(*args)
            except Exception as exc:
                log.critical("%s failed: %r; exiting so that the batch is redelivered", name, exc, exc_info=exc)
                logging.shutdown()
                os._exit(EXIT_AGENT_FAILED)

        return run

    return decorate


def create_app(settings: Settings) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app = WorkerApp(
        settings.app_id,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **faust_broker_options(settings),
        store=session_store.URL if settings.worker_store == "rocksdb://" else settings.worker_store,
        # The local store may hold the changelog's last record before the broker reports it in
        # the partition's end offset (a kill -9 between the two): the store is kept, not refused.
        recovery_consistency_check=False,
        datadir=str(settings.worker_data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # A group join on Tansu takes seconds instead of 30 s with these (README, local-stack notes).
        broker_rebalance_timeout=4,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        # Faust listens on web_bind; web_host only names the worker in links it gives out.
        web_bind=settings.worker_web_host,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        # Every payload is encoded by the product itself (msgspec), so Faust moves bytes only.
        key_serializer="raw",
        value_serializer="raw",
    )
    user_events = app.topic(settings.topic_clicks, settings.topic_purchases, **RAW)
    products = app.topic(settings.topic_products, **RAW)
    summaries = app.topic(settings.topic_online_metrics, **RAW)
    outbox = KafkaOutbox(app, settings)

    # Keyed by user_id; use_partitioner makes the changelog partition follow the
    # key (murmur2, as the platform's producer), which batch processing needs.
    sessions = app.Table(
        "session-features",
        default=None,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
    )
    # Keyed by scope (model version and segment, or the whole stream); values are summed counts.
    online_window = app.Table(
        "online-metrics-window",
        default=dict,  # keys and values go to the changelog as JSON
    ).hopping(WINDOW_SECONDS, WINDOW_STEP_SECONDS, expires=timedelta(minutes=10), key_index=True).relative_to_stream()

    redis_client = async_redis_client(settings)
    dead_letter_tail = KafkaDeadLetterTail(settings)
    pipeline = EventPipeline(
        settings=settings,
        recommender=PopularityCooccurrenceBlend(half_life_seconds=settings.popularity_half_life_days * 86400),
        writer=RecommendationWriter(redis_client, settings.recs_ttl_seconds, settings.redis_max_backoff_seconds),
        sessions=sessions,
        outbox=outbox,
        model_version=MODEL_VERSION,
        archive=EventArchive(settings.archive_dir) if settings.archive_dir else None,
        dead_letters=DeadLetterLog(outbox, redis_client, dead_letter_tail, settings.app_id,
                                   RedisRetry(settings.redis_max_backoff_seconds)),
    )

    def read_window() -> dict:
        """The window that ends soonest, i.e. the last 50-60 s, as rates."""
        now = time.time()
        start, _ = online_window.table.window.earliest(now)
        return window_report((value for _, value in online_window.items().now()), seconds=max(now - start, 1.0))

    pipeline.metrics.export_window(read_window)
    feed = DashboardFeed(redis_client, pipeline.writer.retry, WINDOW_STEP_SECONDS)

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(pipeline.metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/sessions/{user_id}")
    async def session_features(web, request, user_id: str):
        """A customer's session features as this worker holds them (its partitions only)."""
        if not valid_id(user_id):
            return web.json({"error": f"user_id must be {ID_RULE}"}, status=422)
        raw = sessions.get(user_id.encode())
        if raw is None:
            return web.json({"error": "no session for this customer on this worker"}, status=404)
        return web.bytes(msgspec.json.encode(load_features(raw)), content_type="application/json")

    async def use_version(version: str) -> None:
        try:
            version = ArtifactStore(settings.artifact_dir).resolve(version)
        except ArtifactError:
            return  # nothing trained yet: the streaming model serves
        if version == pipeline.model_version:
            return  # loading is costly: the lists would be the same
        try:
            loaded = await asyncio.to_thread(load_version, settings, version)
        except Exception as exc:  # a broken version is not served; the current model goes on
            log.error("model version %s cannot be loaded (%s: %s); still recommending with %s",
                      version, type(exc).__name__, exc, pipeline.model_version)
            return
        if loaded is not None and loaded[0].name != pipeline.model_version:
            pipeline.use_model(*loaded)
            # The model lives until the next version: keeping its millions of objects out of the
            # collector's full scans removes pauses of 100-200 ms from the event path. A replaced
            # model holds no reference cycles, so reference counting still frees it.
            gc.freeze()
            log.info("now recommending with model %s", version)

    @app.on_before_shutdown.connect
    async def close_outputs(app, **kwargs):
        # The consumer has stopped: what is buffered is everything processed.
        if pipeline.archive is not None:
            await asyncio.to_thread(pipeline.archive.flush)
        await dead_letter_tail.stop()

    @app.task
    @exit_on_failure("following model updates")
    async def follow_models():
        await follow_model_updates(settings, use_version)

    @app.timer(WINDOW_STEP_SECONDS)
    @exit_on_failure("publishing the dashboard feed")
    async def publish_dashboard_feed():
        start, end = online_window.table.window.earliest(time.time())
        await feed.publish(online_window.items().now(), start, end)

    @app.agent(user_events, name="user-events")
    @exit_on_failure("the user-events agent")
    async def process_user_events(stream):
        async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
            await pipeline.handle_user_events([event.message for event in batch])

    @app.agent(products, name="products")
    @exit_on_failure("the products agent")
    async def process_products(stream):
        async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
            await pipeline.handle_products([event.message for event in batch])

    @app.agent(summaries, name="online-metrics")
    @exit_on_failure("the online-metrics agent")
    async def aggregate_online_metrics(stream):
        # Summaries are few (a handful per batch), so one at a time: the window needs the current event.
        async for event in stream.events():
            try:
                if event.key is None:
                    raise InvalidSummary("an online summary needs its scope as the key")
                scope = event.key.decode("utf-8", "replace")
                counts = summary_counts(decode_summary(event.value))
            except Exception as exc:  # a bad record is dead-lettered, never the end of the agent
                await outbox.dead_letter(event.message, str(exc) or type(exc).__name__)
                pipeline.metrics.count_events({f"dead_letter:{settings.topic_online_metrics}": 1})
                continue
            online_window[scope].apply(add_counts, counts)

    return app
