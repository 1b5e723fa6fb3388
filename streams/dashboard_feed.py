"""What workers publish to Redis for the dashboard, and how it is read back.

Every ``WINDOW_STEP_SECONDS`` each worker writes the current window of the
online-metrics scopes it owns into the hash ``stats:window`` (one field per
scope, with the window's bounds). The worker that owns the stream-wide scope
then reads every worker's fields and appends one snapshot of the whole stream
to the list ``stats:timeline``, with the segment sizes of ``stats:segments``.
Readers (the API) ignore windows that ended long ago: their scope went quiet.
"""

from __future__ import annotations

import time
from typing import Iterable

import msgspec
import redis.asyncio as aioredis

from streams import redis_keys
from streams.online_summaries import STREAM, click_through, scope_key, window_report
from streams.recommendation_store import RedisRetry

TIMELINE_LENGTH = 8640  # a day of 10 s snapshots
WINDOW_TTL_SECONDS = 300


class WindowField(msgspec.Struct):
    counts: dict
    start: float
    end: float


_encode = msgspec.json.Encoder().encode
_decode_field = msgspec.json.Decoder(WindowField).decode


def fresh_windows(fields: dict[bytes, bytes], now: float, step_seconds: float) -> list[WindowField]:
    """The windows still current at ``now`` (a scope whose window ended more than two steps ago went quiet)."""
    windows = []
    for raw in fields.values():
        try:
            window = _decode_field(raw)
        except msgspec.MsgspecError:
            continue
        if window.end >= now - 2 * step_seconds:
            windows.append(window)
    return windows


def stream_report(windows: list[WindowField], now: float) -> dict:
    """``window_report`` over the given windows, as rates over the time their windows have run."""
    start = min((w.start for w in windows), default=now)
    return window_report((w.counts for w in windows), seconds=max(now - start, 1.0))


def timeline_entry(report: dict, segment_sizes: dict[str, int], now: float) -> dict:
    lists = sum(s["lists"] for s in report["scopes"])
    purchases = sum(s["purchases"] for s in report["scopes"])
    return {
        "ts": round(now, 3),
        "events_per_second": report["events_per_second"],
        "dead_letters_per_second": report["dead_letters_per_second"],
        "freshness_p50_seconds": report["freshness_p50_seconds"],
        "freshness_p99_seconds": report["freshness_p99_seconds"],
        "click_through": click_through(sum(s["clicked_lists"] for s in report["scopes"]), lists),
        "purchase_hit_rate": sum(s["purchase_hits"] for s in report["scopes"]) / purchases if purchases else None,
        "segments": {name: size for name, size in segment_sizes.items() if size > 0},
    }


def decode_sizes(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {name.decode(): int(size) for name, size in raw.items()}


class DashboardFeed:
    def __init__(self, client: aioredis.Redis, retry: RedisRetry, step_seconds: float):
        self.client = client
        self.retry = retry
        self.step_seconds = step_seconds

    async def publish(self, scopes: Iterable[tuple[str, dict]], start: float, end: float) -> None:
        """Write this worker's scopes of the window [start, end); if it owns the stream-wide
        scope, add a snapshot of the whole stream to the timeline."""
        fields = {key: _encode(WindowField(counts, start, end)) for key, counts in scopes if counts}
        if not fields:
            return

        async def write():
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(redis_keys.WINDOW_STATS, mapping=fields)
            pipe.expire(redis_keys.WINDOW_STATS, WINDOW_TTL_SECONDS)
            return await pipe.execute()

        await self.retry(write)
        if scope_key(*STREAM).decode() in fields:
            await self._snapshot()

    async def _snapshot(self) -> None:
        now = time.time()
        window, sizes = await self.retry(lambda: self._read_window_and_sizes())
        entry = timeline_entry(stream_report(fresh_windows(window, now, self.step_seconds), now),
                               decode_sizes(sizes), now)

        async def append():
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(redis_keys.TIMELINE, _encode(entry))
            pipe.ltrim(redis_keys.TIMELINE, 0, TIMELINE_LENGTH - 1)
            return await pipe.execute()

        await self.retry(append)

    async def _read_window_and_sizes(self):
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(redis_keys.WINDOW_STATS)
        pipe.hgetall(redis_keys.SEGMENT_SIZES)
        return await pipe.execute()
