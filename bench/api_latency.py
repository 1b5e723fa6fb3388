"""Serving latency: the storefront's Redis GET and the HTTP API, at a fixed rate, beside baselines.

Starts a private stack, stores lists of RECS_COUNT items for USERS synthetic
customers, starts `recsys api`, then measures in one run:

* redis-benchmark GET on the same Redis server (the server's own floor);
* the storefront's read (redis-py GET of recs:{user}) at RATE requests/s;
* GET /recs/{user_id} on the API at RATE requests/s.

The load is open-loop: requests leave on a fixed schedule whatever the answers'
speed, and each latency counts from the request's scheduled time, so a server
that falls behind cannot hide its queue. Each measure is preceded by a warm-up
at the same rate that is not counted. Prints a table; writes
bench/results/api_latency.json.

Run: .venv/bin/python bench/api_latency.py [--rate 1000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import subprocess
import time
from collections import Counter

import aiohttp
import numpy as np
import redis
import uvloop
from rich.console import Console
from rich.table import Table

from offline.private_stack import private_stack
from streams import redis_keys
from streams.connections import async_redis_client
from streams.recommendation_store import build_list, encode_list
from streams.settings import Settings

from bench_results import save_results

USERS = 10_000
# Each measure starts with this long at the full rate, not counted: connections open, caches fill.
WARM_UP_SECONDS = 3.0


def store_lists(client: redis.Redis, count: int, items: int) -> None:
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        listing = build_list(f"u{n}", [(f"{10000 + (n * 7 + k) % 3000}", 1.0 / (k + 1)) for k in range(items)], "bench")
        pipe.set(redis_keys.recs(f"u{n}"), encode_list(listing))
    pipe.set(redis_keys.POPULAR, encode_list(build_list("", [("10001", 1.0)], "bench")))
    pipe.execute()


async def fixed_rate(call, rate: float, seconds: float) -> tuple[np.ndarray, Counter]:
    """Latencies (s) of ``call()`` issued ``rate`` times a second for ``seconds``, and failures by kind.

    At each wake-up every request that is due leaves; a latency counts from its due time, so the
    generator's own lateness is charged to the server, never hidden. The garbage collector is
    paused meanwhile: its pauses would be charged too."""
    latencies: list[float] = []
    failures: Counter = Counter()
    total = int(rate * seconds)
    done = asyncio.Event()
    finished = 0

    async def one(due: float) -> None:
        nonlocal finished
        try:
            await call()
            latencies.append(time.perf_counter() - due)
        except Exception as exc:
            failures[type(exc).__name__] += 1
        finished += 1
        if finished == total:
            done.set()

    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter() + 0.05
        sent = 0
        while sent < total:
            now = time.perf_counter()
            while sent < total and start + sent / rate <= now:
                asyncio.ensure_future(one(start + sent / rate))
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        await done.wait()
    finally:
        gc.enable()
    return np.array(latencies), failures


def summary(name: str, latencies: np.ndarray, failures: Counter, rate: float) -> dict:
    ms = latencies * 1000
    return {"measure": name, "rate": rate, "requests": int(len(ms) + sum(failures.values())),
            "failures": dict(failures),
            "p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3)}


def redis_benchmark(port: int) -> dict:
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-n", "50000", "-c", "1", "-d", "400",
                          "-r", str(USERS), "--csv"], capture_output=True, text=True, check=True).stdout
    header, row = [line.replace('"', "").split(",") for line in out.strip().splitlines()[:2]]
    values = dict(zip(header, row))
    return {"measure": "redis-benchmark GET (1 client, closed loop)", "rate": float(values["rps"]),
            "requests": 50000, "failures": {}, "p50_ms": float(values["p50_latency_ms"]),
            "p99_ms": float(values["p99_latency_ms"]), "max_ms": float(values["max_latency_ms"])}


def closed_loop_reads(settings: Settings, count: int = 50_000) -> dict:
    """The storefront's read as redis-benchmark measures GET: one client, one request at a time."""
    client = redis.Redis.from_url(settings.redis_url)
    latencies = np.empty(count)
    for n in range(count):
        started = time.perf_counter()
        client.get(redis_keys.recs(f"u{random.randrange(USERS)}"))
        latencies[n] = time.perf_counter() - started
    return summary("storefront read: redis-py GET recs:{user} (1 client, closed loop)", latencies, Counter(),
                   count / latencies.sum())


async def measure(settings: Settings, api_url: str, rate: float, seconds: float) -> list[dict]:
    async def nothing():
        await asyncio.sleep(0)

    latencies, failures = await fixed_rate(nothing, rate, seconds)
    rows = [summary("load generator alone (no request): the measurement floor", latencies, failures, rate)]
    client = async_redis_client(settings)

    def read():
        return client.get(redis_keys.recs(f"u{random.randrange(USERS)}"))

    await fixed_rate(read, rate, WARM_UP_SECONDS)
    latencies, failures = await fixed_rate(read, rate, seconds)
    rows.append(summary("storefront read: redis.asyncio GET recs:{user} (open loop)", latencies, failures, rate))
    await client.aclose()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def get_recs():
            async with session.get(f"{api_url}/recs/u{random.randrange(USERS)}?k=10") as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(response.status)

        await fixed_rate(get_recs, rate, WARM_UP_SECONDS)
        latencies, failures = await fixed_rate(get_recs, rate, seconds)
        rows.append(summary("API GET /recs/{user_id}?k=10 (open loop)", latencies, failures, rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each measure runs (default 15)")
    args = parser.parse_args()
    console = Console(width=150)
    with private_stack("bench-api", archive_dir="") as stack:
        settings = stack.settings
        store_lists(redis.Redis.from_url(settings.redis_url), USERS, settings.recs_count)
        api_url = stack.start_api()
        port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
        rows = [redis_benchmark(port), closed_loop_reads(settings)]
        rows += uvloop.run(measure(settings, api_url, args.rate, args.seconds))
    table = Table("measure", "rate (req/s)", "requests", "failures", "p50 (ms)", "p99 (ms)", "max (ms)",
                  title=f"serving latency, {USERS:,} customers with {settings.recs_count} items each")
    for row in rows:
        table.add_row(row["measure"], f"{row['rate']:,.0f}", f"{row['requests']:,}",
                      ", ".join(f"{n} {kind}" for kind, n in row["failures"].items()) or "0",
                      f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}", f"{row['max_ms']:.3f}")
    console.print(table)
    api, read = rows[-1], rows[-2]
    console.print(f"API p99 is {api['p99_ms'] / read['p99_ms']:.1f}x the storefront's direct read "
                  f"(targets: Redis read p99 <= 1 ms, API p99 <= 10 ms at 1,000 req/s)")
    save_results("api_latency", {"users": USERS, "rows": rows})


if __name__ == "__main__":
    main()
