"""The Faust application: its configuration, and the parts it is assembled from (topics and tables
in ``streams.topology``, agents in ``streams.agents``, web pages in ``streams.pages``, background
tasks and timers in ``streams.tasks``)."""

from __future__ import annotations

import faust

from models.session_blend import PopularityCooccurrenceBlend
from streams import session_store
from streams.agents import register_agents
from streams.connections import async_redis_client, faust_broker_options
from streams.dashboard_feed import DashboardFeed
from streams.dead_letter_log import DeadLetterLog, KafkaDeadLetterTail
from streams.event_archive import EventArchive
from streams.event_pipeline import EventPipeline
from streams.kafka_transport import WorkerApp
from streams.log_reader import read_ranges
from streams.online_summaries import WINDOW_STEP_SECONDS
from streams.outbox import KafkaOutbox
from streams.pages import register_pages
from streams.recommendation_store import RecommendationWriter
from streams.settings import Settings
from streams.tasks import register_tasks
from streams.topology import declare

# The streaming model serves until an offline version is published.
MODEL_VERSION = "online-popularity-cooccurrence-1"
# How long a batch waits for messages its consumer skipped to be read back from Kafka.
READ_BACK_SECONDS = 10.0


def configured_app(settings: Settings) -> faust.App:
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    return WorkerApp(
        settings,
        settings.app_id,
        **faust_broker_options(settings),
        store=session_store.URL if settings.worker_store == "rocksdb://" else settings.worker_store,
        # The local store may hold the changelog's last record before the broker reports it in
        # the partition's end offset (a kill -9 between the two): the store is kept, not refused.
        recovery_consistency_check=False,
        datadir=str(settings.worker_data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,  # the tables' changelogs
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
        producer_linger=0.01,
        value_serializer="raw",
    )


def create_app(settings: Settings) -> faust.App:
    app = configured_app(settings)
    topology = declare(app, settings)
    outbox = KafkaOutbox(app, settings)
    redis_client = async_redis_client(settings)
    writer = RecommendationWriter(redis_client, settings.recs_ttl_seconds, settings.redis_max_backoff_seconds,
                                  session_seconds=round(settings.session_gap_seconds))
    dead_letter_tail = KafkaDeadLetterTail(settings)
    pipeline = EventPipeline(
        settings=settings,
        recommender=PopularityCooccurrenceBlend(half_life_seconds=settings.popularity_half_life_days * 86400),
        writer=writer,
        sessions=topology.sessions,
        outbox=outbox,
        model_version=MODEL_VERSION,
        archive=EventArchive(settings.archive_dir) if settings.archive_dir else None,
        dead_letters=DeadLetterLog(outbox, redis_client, dead_letter_tail, settings.app_id, writer.retry),
        read_back=lambda ranges: read_ranges(settings, ranges, READ_BACK_SECONDS),
        acknowledge=lambda message: app.consumer.ack(message),
    )
    register_agents(app, settings, topology, pipeline, outbox)
    register_pages(app, topology, pipeline)
    feed = DashboardFeed(redis_client, writer.retry, WINDOW_STEP_SECONDS)
    register_tasks(app, settings, topology, pipeline, feed, dead_letter_tail)
    return app
