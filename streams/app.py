"""The Faust application: configuration, topics, the session table and the agents."""

from __future__ import annotations

import asyncio
import logging

import faust
import redis.asyncio as aioredis

from models.session_blend import PopularityCooccurrenceBlend
from streams.dead_letters import dead_letter_headers
from streams.event_archive import EventArchive
from streams.event_pipeline import EventPipeline, Message
from streams.events import DriftAlert, FeedbackEvent, RetrainRequest, encode_event
from streams.model_updates import follow_model_updates, load_version
from streams.recommendation_store import RecommendationWriter
from streams.settings import Settings

log = logging.getLogger(__name__)

MODEL_VERSION = "online-popularity-cooccurrence-1"


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        datadir=str(settings.worker_data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # A group join on Tansu takes seconds instead of 30 s with these (README, local-stack notes).
        broker_rebalance_timeout=4,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        # Every payload is encoded by the product itself (msgspec), so Faust moves bytes only.
        key_serializer="raw",
        value_serializer="raw",
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    user_events = app.topic(settings.topic_clicks, settings.topic_purchases, **raw)
    products = app.topic(settings.topic_products, **raw)
    dead_letters = app.topic(settings.topic_dead_letters, **raw)
    feedback_topic = app.topic(settings.topic_feedback, **raw)
    retrain_topic = app.topic(settings.topic_retrain_requests, **raw)
    drift_topic = app.topic(settings.topic_drift_alerts, **raw)

    # Keyed by user_id; use_partitioner makes the changelog partition follow the
    # key (murmur2, as the platform's producer), which batch processing needs.
    sessions = app.Table(
        "session-features",
        default=None,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
    )

    async def send_dead_letter(message: Message, reason: str) -> None:
        await dead_letters.send(
            key=message.key,
            value=message.value or b"",
            headers=dead_letter_headers(reason, message.topic, message.partition, message.offset),
        )

    async def send_feedback(feedback: FeedbackEvent) -> None:
        await feedback_topic.send(key=feedback.user_id.encode(), value=encode_event(feedback))

    async def send_retrain_request(request: RetrainRequest) -> None:
        log.warning("purchase hit-rate of %s fell from %.3f to %.3f: requesting a retrain",
                    request.model_version, request.baseline_hit_rate, request.current_hit_rate)
        await retrain_topic.send(key=b"retrain", value=encode_event(request))

    async def send_drift_alert(alert: DriftAlert) -> None:
        log.warning("purchase drift: typical %s went from %.2f to %.2f", alert.statistic, alert.before, alert.now)
        await drift_topic.send(key=alert.statistic.encode(), value=encode_event(alert))

    redis_client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    pipeline = EventPipeline(
        settings=settings,
        recommender=PopularityCooccurrenceBlend(half_life_seconds=settings.popularity_half_life_days * 86400),
        writer=RecommendationWriter(redis_client, settings.recs_ttl_seconds, settings.redis_max_backoff_seconds),
        sessions=sessions,
        send_dead_letter=send_dead_letter,
        model_version=MODEL_VERSION,
        archive=EventArchive(settings.archive_dir) if settings.archive_dir else None,
        send_feedback=send_feedback,
        send_retrain_request=send_retrain_request,
        send_drift_alert=send_drift_alert,
    )

    @app.page("/metrics")
    async def metrics(web, request):
        return web.bytes(pipeline.metrics.render(), content_type="text/plain; version=0.0.4")

    async def use_version(version: str) -> None:
        if version == pipeline.model_version:
            return
        loaded = await asyncio.to_thread(load_version, settings, version)
        if loaded is not None and loaded[0].name != pipeline.model_version:
            pipeline.use_model(*loaded)
            log.info("now recommending with model %s", version)

    @app.on_before_shutdown.connect
    async def flush_archive(app, **kwargs):
        # The consumer has stopped: what is buffered is everything processed.
        if pipeline.archive is not None:
            await asyncio.to_thread(pipeline.archive.flush)

    @app.task
    async def follow_models():
        await follow_model_updates(settings, use_version)

    @app.agent(user_events, name="user-events")
    async def process_user_events(stream):
        async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
            await pipeline.handle_user_events([event.message for event in batch])

    @app.agent(products, name="products")
    async def process_products(stream):
        async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
            await pipeline.handle_products([event.message for event in batch])

    return app
