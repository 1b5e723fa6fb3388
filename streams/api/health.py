"""Whether the API's dependencies answer: Redis (PING) and Kafka (a metadata round trip)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from aiokafka import AIOKafkaClient

from streams.connections import aiokafka_options
from streams.settings import Settings

CHECK_TIMEOUT_SECONDS = 3.0
KAFKA_CHECK_CACHE_SECONDS = 5.0  # a metadata round trip per health request would be wasteful


class HealthCheck:
    def __init__(self, settings: Settings, redis_client: aioredis.Redis):
        self.settings = settings
        self.redis = redis_client
        self._kafka: tuple[float, dict] | None = None

    async def report(self) -> dict:
        redis_state, kafka_state = await asyncio.gather(self._redis_state(), self._kafka_state())
        healthy = redis_state["ok"] and kafka_state["ok"]
        return {"status": "ok" if healthy else "degraded", "redis": redis_state, "kafka": kafka_state}

    async def _redis_state(self) -> dict:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.redis.ping(), CHECK_TIMEOUT_SECONDS)
            return {"ok": True, "seconds": round(time.perf_counter() - started, 4)}
        except Exception as exc:  # any failure means "not healthy"; the reason is the class name only
            return {"ok": False, "error": type(exc).__name__}

    async def _kafka_state(self) -> dict:
        if self._kafka is not None and time.monotonic() - self._kafka[0] < KAFKA_CHECK_CACHE_SECONDS:
            return self._kafka[1]
        started = time.perf_counter()
        options = {k: v for k, v in aiokafka_options(self.settings).items() if v is not None}
        client = AIOKafkaClient(**options, request_timeout_ms=int(CHECK_TIMEOUT_SECONDS * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), CHECK_TIMEOUT_SECONDS)
            state = {"ok": True, "brokers": len(client.cluster.brokers()),
                     "seconds": round(time.perf_counter() - started, 4)}
        except Exception as exc:
            state = {"ok": False, "error": type(exc).__name__}
        finally:
            await client.close()
        self._kafka = (time.monotonic(), state)
        return state
