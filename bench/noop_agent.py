"""A Faust agent that only counts events: the baseline for the worker's own cost.

Configured like the product's worker (same broker settings, raw bytes,
take_events batches), it adds each batch's size to the Redis key bench:noop.
With NOOP_SESSION_TABLE=1 it is the product's own app (``streams.app.configured_app``:
RocksDB session table with its changelog) and also writes each batch's customers to the
session table, once per customer per batch as the worker does, with the event as the value:
the cost of Faust and the session state with none of the product's work.
Started by bench/stream_throughput.py with the product's settings in the environment.
"""

from __future__ import annotations

import os

import faust
import redis.asyncio as aioredis

from streams.app import configured_app
from streams.connections import faust_broker_options
from streams.settings import Settings
from streams.topology import declare

settings = Settings.from_env()
WITH_TABLE = os.environ.get("NOOP_SESSION_TABLE") == "1"
if WITH_TABLE:
    app = configured_app(settings)
    topology = declare(app, settings)
    events, sessions = topology.user_events, topology.sessions
else:
    app = faust.App(settings.app_id, **faust_broker_options(settings), store="memory://",
                    datadir=str(settings.worker_data_dir), autodiscover=False,
                    topic_partitions=settings.topic_partitions, consumer_auto_offset_reset="earliest",
                    broker_rebalance_timeout=4, broker_session_timeout=6, broker_heartbeat_interval=1,
                    web_enabled=False, key_serializer="raw", value_serializer="raw")
    events = app.topic(settings.topic_clicks, settings.topic_purchases, key_type=bytes, value_type=bytes)
client = aioredis.Redis.from_url(settings.redis_url)


@app.agent(events)
async def count(stream):
    async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
        if WITH_TABLE:
            for key, value in {event.key: event.value for event in batch}.items():
                sessions[key] = value
        await client.incrby("bench:noop", len(batch))


if __name__ == "__main__":
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app.main()
