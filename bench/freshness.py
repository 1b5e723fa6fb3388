"""Freshness: from an event's production to its customer's updated list in Redis, at a fixed load.

On a private stack with a trained model published, one worker consumes a
simulated shop's clicks and purchases, re-stamped with the time they are sent
and published at a fixed rate (default: half the one-worker throughput that
bench/stream_throughput.py last measured). Redis keyspace notifications report
every write of recs:{user_id}; a list's event_ts tells which events it
reflects, so each event's freshness is the time of the first write that
reflects it minus the time it was sent.

Baseline in the same run: Kafka alone, the time from a send to a raw aiokafka
consumer receiving it, at the same rate. Prints a table; writes
bench/results/freshness.json.

Run: .venv/bin/python bench/freshness.py [--rate R] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import threading
import time
from collections import defaultdict

import msgspec
import numpy as np
import redis
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from offline.release import train_and_publish
from offline.private_stack import private_stack, wait_until_processed
from offline.replay import event_topics, platform_events
from offline.simulator import simulate_history
from streams import redis_keys
from streams.events import ClickEvent, encode_event, event_key
from streams.recommendation_store import decode_list
from streams.settings import Settings
from streams.topic_admin import ensure_topics

from bench_results import RESULTS_DIR, save_results

THROUGHPUT = RESULTS_DIR / "stream_throughput.json"
WARM_UP_SECONDS = 5.0


def default_rate() -> float:
    """Half of the last measured one-worker throughput, else 1,000 events/s."""
    try:
        rows = json.loads(THROUGHPUT.read_text())["rows"]
        return round(0.5 * next(r["events_per_second"] for r in rows if r["measure"].startswith("recsys worker x1")))
    except (OSError, ValueError, KeyError, StopIteration):
        return 1000.0


def paced_send(settings: Settings, events, rate: float, seconds: float, topics: dict) -> dict[str, list[float]]:
    """Send ``rate`` events a second for ``seconds``, each stamped with its send time; return the
    send times per customer."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=1, acks=1)
    sent: dict[str, list[float]] = defaultdict(list)
    start = time.time()
    for n, (kind, event) in enumerate(events[: int(rate * seconds)]):
        due = start + n / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        now = time.time()
        stamped = msgspec.structs.replace(event, ts=now)
        producer.send(topics[kind], key=event_key(stamped), value=encode_event(stamped))
        sent[stamped.user_id].append(now)
    producer.flush()
    producer.close()
    return sent


def watch_lists(settings: Settings, stop: threading.Event) -> list[tuple[str, float, float]]:
    """(customer, event_ts, written at) of every recs:{user_id} write, from keyspace notifications."""
    client = redis.Redis.from_url(settings.redis_url)
    client.config_set("notify-keyspace-events", "K$")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("__keyspace@0__:recs:*")
    writes = []
    reader = redis.Redis.from_url(settings.redis_url)
    while True:
        message = pubsub.get_message(timeout=0.2)
        if message is None:
            if stop.is_set():  # and nothing left unread
                break
            continue
        seen = time.time()
        user = message["channel"].decode().split("recs:", 1)[1]
        raw = reader.get(redis_keys.recs(user))
        if raw is not None:
            writes.append((user, decode_list(raw).event_ts or 0.0, seen))
    pubsub.close()
    return writes


def freshness(sent: dict[str, list[float]], writes, since: float) -> np.ndarray:
    """For each event sent after ``since``: first write reflecting it minus its send time."""
    pending = {user: sorted(times) for user, times in sent.items()}
    done = {user: 0 for user in pending}  # events of each customer already matched, oldest first
    latencies = []
    for user, event_ts, seen in writes:
        times = pending.get(user)
        if not times:
            continue
        upto = bisect.bisect_right(times, event_ts + 1e-6)
        for ts in times[done[user]:upto]:
            if ts >= since:
                latencies.append(seen - ts)
        done[user] = max(done[user], upto)
    unmatched = sum(len(t) - done[u] for u, t in pending.items())
    if unmatched:
        raise RuntimeError(f"{unmatched} events never reached a list")
    return np.array(latencies)


async def kafka_delivery(settings: Settings, events, rate: float, seconds: float) -> np.ndarray:
    """Baseline: send to a topic of its own and time each message's arrival at a raw consumer."""
    topic = f"{settings.topic_clicks}-delivery"
    ensure_topics(settings.replace(topic_clicks=topic))
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                auto_offset_reset="latest", fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)
    await consumer.start()
    await asyncio.sleep(1.0)
    latencies = []
    expected = int(rate * seconds)
    sender = asyncio.get_running_loop().run_in_executor(
        None, paced_send, settings, events, rate, seconds, {"clicks": topic, "purchases": topic})
    try:
        while len(latencies) < expected:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.time()
            for records in batches.values():
                latencies += [now - msgspec.json.decode(r.value)["ts"] for r in records]
            if sender.done() and not batches:
                break
    finally:
        await consumer.stop()
    await sender
    return np.array(latencies[int(rate * WARM_UP_SECONDS):])


def wait_until_serving(settings: Settings, client: redis.Redis, version: str, timeout: float = 120.0) -> None:
    """Until a probe click comes back as a list of ``version``: the worker has joined, loaded the model."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    deadline = time.monotonic() + timeout
    n = 0
    try:
        while time.monotonic() < deadline:
            n += 1
            probe = ClickEvent(f"probe-{n}", "probe", "probe-item", "view", time.time())
            producer.send(settings.topic_clicks, key=b"probe", value=encode_event(probe))
            producer.flush()
            time.sleep(0.5)
            raw = client.get(redis_keys.recs("probe"))
            if raw is not None and decode_list(raw).model_version == version:
                return
        raise RuntimeError(f"the worker did not serve {version} within {timeout:.0f} s")
    finally:
        producer.close()


def row(name: str, latencies: np.ndarray) -> dict:
    ms = latencies * 1000
    return {"measure": name, "events": int(len(ms)), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "max_ms": round(float(ms.max()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: half of max)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long events are sent (default 30)")
    args = parser.parse_args()
    rate = args.rate or default_rate()
    console = Console(width=150)
    history = simulate_history(n_users=3000, days=60, seed=1)
    events = platform_events(history)
    with private_stack("bench-freshness", archive_dir="", log_level="warning") as stack:
        settings = stack.settings
        version = train_and_publish(settings, history, None, "simulator", True, lambda m: None).version
        rows = [row("Kafka alone: send to raw aiokafka consumer", asyncio.run(
            kafka_delivery(settings, events, rate, args.seconds)))]
        worker = stack.start_worker()
        client = redis.Redis.from_url(settings.redis_url)
        wait_until_serving(settings, client, version)
        stop = threading.Event()
        writes: list = []
        watcher = threading.Thread(target=lambda: writes.extend(watch_lists(settings, stop)))
        watcher.start()
        started = time.time()
        sent = paced_send(settings, events, rate, args.seconds, event_topics(settings))
        # Every event is accounted for (valid, duplicate or dead letter) before the watch ends.
        processed = wait_until_processed(client, sum(len(times) for times in sent.values()), worker, timeout=300)
        time.sleep(1.0)
        stop.set()
        watcher.join()
        rows.append(row("event sent to its customer's list in Redis (1 worker)",
                        freshness(sent, writes, since=started + WARM_UP_SECONDS)))
        rows[-1]["processed"] = processed
    table = Table("measure", "events", "p50 (ms)", "p99 (ms)", "max (ms)",
                  title=f"freshness at {rate:,.0f} events/s offered for {args.seconds:.0f} s "
                        f"(first {WARM_UP_SECONDS:.0f} s not counted)")
    for r in rows:
        table.add_row(r["measure"], f"{r['events']:,}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}")
    console.print(table)
    console.print("target: p99 <= 250 ms")
    save_results("freshness", {"rate": rate, "rows": rows})


if __name__ == "__main__":
    main()
