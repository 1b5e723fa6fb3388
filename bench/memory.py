"""Memory per customer: Redis bytes for what the storefront reads, and the worker's resident memory.

Redis (private server): for USERS synthetic customers, the list the worker
writes (RECS_COUNT items with their reasons, with its TTL) and the customer's segment, measured two
ways: growth of INFO used_memory, and MEMORY USAGE of sampled lists and of the segments' hashes. Baseline in
the same run: one empty string key per customer, Redis' own cost of a key.

Worker: one worker process with a trained model; RSS before and after each of
USERS new customers sent two clicks (so each holds a session, served lists and
a dedupe window).

Prints a table; writes bench/results/memory.json.

Run: .venv/bin/python bench/memory.py [--users 100000]
"""

from __future__ import annotations

import argparse
import random
import time

import psutil
import redis
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from offline.release import train_and_publish
from offline.private_stack import private_stack, wait_until_processed
from offline.simulator import simulate_history
from models.explanations import Reason
from streams import redis_keys
from streams.events import ClickEvent, encode_event
from streams.recommendation_store import build_list, encode_list

from bench_results import save_results

SAMPLE = 2000
SEGMENTS = ("high-value frequent", "steady regular", "budget occasional", "lapsing")
VERSION = "20261122T234522Z-22cfde48"


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def fill(client: redis.Redis, users: int, write) -> int:
    """Bytes of used_memory that ``write(pipe, n)`` adds for ``users`` customers."""
    before = used_memory(client)
    pipe = client.pipeline(transaction=False)
    for n in range(users):
        write(pipe, n)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return used_memory(client) - before


def reason(rng: random.Random, history: list[str]) -> Reason:
    """A reason as lists carry them: mostly a neighbour of one of the customer's few items or an
    earlier purchase (the Online Retail mix), some popular fill-ins and finds of other models."""
    draw = rng.random()
    if draw < 0.55:
        return Reason("similar_to", rng.choice(history))
    if draw < 0.8:
        return Reason("bought_before", f"{rng.randint(1, 9)}|2011-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}")
    if draw < 0.9:
        return Reason("trending")
    return Reason("discover", "als")


def redis_per_customer(client: redis.Redis, users: int, items: int, ttl: int) -> dict:
    rng = random.Random(0)
    catalog = [f"{rng.randint(10000, 99999)}{rng.choice(['', '', 'A', 'B'])}" for _ in range(4000)]
    empty = fill(client, users, lambda pipe, n: pipe.set(f"c:{n}", b""))
    client.flushdb()

    def recs_and_segment(pipe, n):
        scored = [(item, 1.0 / (k + 1)) for k, item in enumerate(rng.sample(catalog, items))]
        history = rng.sample(catalog, 5)  # the customer's items that evidence points to
        listing = build_list(f"{12346 + n}", scored, VERSION, event_ts=time.time(),
                             reasons=[reason(rng, history) for _ in scored])
        pipe.set(redis_keys.recs(listing.user_id), encode_list(listing), ex=ttl)
        pipe.hset(redis_keys.segment_bucket(listing.user_id), listing.user_id, SEGMENTS[n % len(SEGMENTS)])

    product = fill(client, users, recs_and_segment)
    sampled = [f"{12346 + n}" for n in rng.sample(range(users), SAMPLE)]
    recs_usage = [client.memory_usage(redis_keys.recs(u), samples=0) for u in sampled]
    buckets = {redis_keys.segment_bucket(f"{12346 + n}") for n in range(users)}
    segments_bytes = sum(client.memory_usage(bucket, samples=0) for bucket in buckets)
    value = len(client.get(redis_keys.recs(sampled[0])))
    client.flushdb()
    return {"empty_key_bytes": empty / users, "recs_and_segment_bytes": product / users,
            "recs_memory_usage": sum(recs_usage) / SAMPLE, "segment_memory_usage": segments_bytes / users,
            "recs_value_bytes": value}


def worker_rss_growth(stack, users: int) -> dict:
    settings = stack.settings
    history = simulate_history(n_users=300, seed=2)
    version = train_and_publish(settings, history, None, "simulator", True, lambda m: None).version
    worker = stack.start_worker()
    client = redis.Redis.from_url(settings.redis_url)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    items = history["item_id"].unique().tolist()
    now = time.time()
    producer.send(settings.topic_clicks, key=b"warm", value=encode_event(ClickEvent("w", "warm", items[0], "view", now)))
    producer.flush()
    wait_until_processed(client, 1, worker, timeout=120)
    deadline = time.monotonic() + 120
    while not client.get(redis_keys.recs("warm")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(15)  # the model is loaded (it is the worker's first resident growth)
    before = psutil.Process(worker.pid).memory_info().rss
    for n in range(users):
        user = f"m{n}"
        for k, kind in enumerate(("view", "add_to_cart")):
            event = ClickEvent(f"{user}-{k}", user, items[(n + k) % len(items)], kind, now + k)
            producer.send(settings.topic_clicks, key=user.encode(), value=encode_event(event))
    producer.flush()
    producer.close()
    processed = wait_until_processed(client, 1 + 2 * users, worker, timeout=1800)
    after = psutil.Process(worker.pid).memory_info().rss
    return {"model_version": version, "events": processed, "rss_before": before, "rss_after": after,
            "rss_growth_per_customer": (after - before) / users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    console = Console(width=150)
    with private_stack("bench-memory", archive_dir="", log_level="warning") as stack:
        client = redis.Redis.from_url(stack.settings.redis_url)
        redis_figures = redis_per_customer(client, args.users, stack.settings.recs_count,
                                           stack.settings.recs_ttl_seconds)
        worker_figures = worker_rss_growth(stack, args.users)
    table = Table("measure", "bytes per customer", title=f"memory, {args.users:,} customers, "
                  f"{stack.settings.recs_count} recommendations each")
    table.add_row("Redis: an empty key (baseline: Redis' own cost of a key)", f"{redis_figures['empty_key_bytes']:.0f}")
    table.add_row("Redis: recs:{user} (with TTL) + the segment, used_memory growth",
                  f"{redis_figures['recs_and_segment_bytes']:.0f}")
    table.add_row("  MEMORY USAGE recs:{user}", f"{redis_figures['recs_memory_usage']:.0f}")
    table.add_row("  MEMORY USAGE of the segments' hashes, per customer", f"{redis_figures['segment_memory_usage']:.0f}")
    table.add_row("  the list's stored value alone", f"{redis_figures['recs_value_bytes']}")
    table.add_row("worker RSS growth (2 clicks each: session features, served lists)",
                  f"{worker_figures['rss_growth_per_customer']:.0f}")
    console.print(table)
    console.print(f"Redis per customer is {redis_figures['recs_and_segment_bytes'] / redis_figures['empty_key_bytes']:.1f}"
                  f" x an empty key; target <= 400 bytes. Worker RSS grew "
                  f"{(worker_figures['rss_after'] - worker_figures['rss_before']) / 2**20:.0f} MiB per "
                  f"{args.users:,} customers.")
    save_results("memory", {"users": args.users, "redis": redis_figures, "worker": worker_figures})


if __name__ == "__main__":
    main()
