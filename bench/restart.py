"""Restart: from a worker's start to its first processed event, with many customers' sessions held.

On a private stack, one worker builds session state for N customers (one click
each), then stops (SIGTERM). A new worker starts on the same state directory and
one click of a new customer is sent at once; the figure is the time from the
start of the new process to that customer's list appearing in Redis. Runs for
each ``--customers`` point and each session store (``rocksdb://``, the default,
keeps state on disk; ``memory://`` replays the whole changelog). ``--memory-max``
skips memory:// above that many customers: its replay grows with the state.

Baseline in the same run: the same start and first event with no state at all.
Target: <= 15 s at 1M customers. Prints a table; writes bench/results/restart.json.

Run: .venv/bin/python bench/restart.py [--customers 100000 1000000] [--memory-max 100000]
"""

from __future__ import annotations

import argparse
import time

import redis
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from bench_results import save_results
from offline.private_stack import private_stack, wait_until_processed
from streams.events import ClickEvent, encode_event
from streams.local_stack import stop_pid

SEND_BATCH = 20_000


def build_state(stack, client: redis.Redis, customers: int) -> float:
    """One click per customer, processed by a worker that is then stopped; returns the seconds taken."""
    started = time.monotonic()
    worker = stack.start_worker()
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers, linger_ms=20,
                             batch_size=1 << 18)
    now = time.time()
    for n in range(customers):
        user = f"c{n}"
        producer.send(stack.settings.topic_clicks, key=user.encode(),
                      value=encode_event(ClickEvent(f"e{n}", user, f"i{n % 5000}", "view", now)))
        if n % SEND_BATCH == 0:
            producer.flush()
    producer.flush()
    producer.close()
    seen = wait_until_processed(client, customers, worker, timeout=max(600.0, customers / 500))
    if seen < customers:
        raise RuntimeError(f"the worker processed {seen:,} of {customers:,} events")
    time.sleep(5)  # the changelog and the commit catch up
    worker.terminate()
    worker.wait(timeout=120)
    return time.monotonic() - started


def time_to_first_event(stack, client: redis.Redis) -> float:
    """Start a worker and send one new customer's click; seconds until their list is in Redis."""
    started = time.monotonic()
    worker = stack.start_worker()
    user = f"after-restart-{time.time_ns()}"
    producer = KafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    producer.send(stack.settings.topic_clicks, key=user.encode(),
                  value=encode_event(ClickEvent(f"{user}-e", user, "i1", "view", time.time())))
    producer.flush()
    producer.close()
    try:
        while client.get(f"recs:{user}") is None:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            if time.monotonic() - started > 1800:
                raise RuntimeError("no list after 30 minutes")
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop_pid(worker.pid, grace_seconds=60)


def measure(customers: int, store: str) -> dict:
    with private_stack(f"restart-{store[:-3]}-{customers}", worker_store=store, log_level="warning") as stack:
        client = redis.Redis.from_url(stack.settings.redis_url)
        try:
            built = build_state(stack, client, customers) if customers else 0.0
            seconds = time_to_first_event(stack, client)
        finally:
            client.close()
    return {"customers": customers, "store": store, "build_seconds": round(built, 1),
            "restart_to_first_event_seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--memory-max", type=int, default=100_000)
    args = parser.parse_args()
    console = Console(width=150)
    runs = [measure(0, "rocksdb://")]
    console.print(f"baseline, no state: {runs[0]['restart_to_first_event_seconds']} s")
    for customers in args.customers:
        for store in ("rocksdb://", "memory://"):
            if store == "memory://" and customers > args.memory_max:
                continue
            runs.append(measure(customers, store))
            console.print(runs[-1])
    baseline = runs[0]["restart_to_first_event_seconds"]
    table = Table("customers held", "store", "start to first event (s)", "x no-state start", "state built in (s)",
                  title="worker restart, 2 cores")
    for run in runs:
        table.add_row(f"{run['customers']:,}", run["store"], f"{run['restart_to_first_event_seconds']:.1f}",
                      f"{run['restart_to_first_event_seconds'] / baseline:.2f}", f"{run['build_seconds']:.0f}")
    console.print(table)
    save_results("restart", {"runs": runs, "target_seconds_at_1m": 15})


if __name__ == "__main__":
    main()
