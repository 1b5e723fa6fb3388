"""A Faust agent that only counts events: the baseline for the worker's own cost.

Configured like the product's worker (same broker settings, raw bytes,
take_events batches), it adds each batch's size to the Redis key bench:noop.
Started by bench/stream_throughput.py with the product's settings in the environment.
"""

from __future__ import annotations

import faust
import redis.asyncio as aioredis

from streams.connections import faust_broker_options
from streams.settings import Settings

settings = Settings.from_env()
app = faust.App(settings.app_id, **faust_broker_options(settings), store="memory://",
                datadir=str(settings.worker_data_dir), autodiscover=False, topic_partitions=settings.topic_partitions,
                consumer_auto_offset_reset="earliest", broker_rebalance_timeout=4, broker_session_timeout=6,
                broker_heartbeat_interval=1, web_enabled=False, key_serializer="raw", value_serializer="raw")
events = app.topic(settings.topic_clicks, settings.topic_purchases, key_type=bytes, value_type=bytes)
client = aioredis.Redis.from_url(settings.redis_url)


@app.agent(events)
async def count(stream):
    async for batch in stream.take_events(settings.worker_batch_size, settings.worker_batch_window_seconds):
        await client.incrby("bench:noop", len(batch))


if __name__ == "__main__":
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    app.main()
