"""Events over HTTP: what POST /events holds, sent through the Python client, beside raw aiokafka.

Starts a private stack and `recsys api` with an API key, then measures in one run:

* raw aiokafka: the same click events produced straight to Kafka (acks=all), as fast as it goes;
* the client at full speed (one connection, BATCH events per request);
* the client paced at RATE events/s for SECONDS: the rate held, request latency, and whether
  the count in Kafka equals what the route accepted.

Prints a table; writes bench/results/events_route.json.

Run: .venv/bin/python bench/events_route.py [--rate 2000] [--seconds 10] [--batch 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from offline.private_stack import private_stack
from streams.client import RecsysClient
from streams.events import ClickEvent, encode_event

from bench_results import save_results

KEY = "bench-events-route-key"


def clicks(start: int, count: int) -> list[ClickEvent]:
    now = time.time()
    return [ClickEvent(f"e{n}", f"u{n % 5000}", f"I{n % 3000}", "view", now) for n in range(start, start + count)]


async def raw_producer_rate(bootstrap: str, topic: str, count: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    events = clicks(0, count)
    started = time.perf_counter()
    sent = [await producer.send(topic, encode_event(e), key=e.user_id.encode()) for e in events]
    await asyncio.gather(*sent)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return count / elapsed


def client_full_speed(shop: RecsysClient, seconds: float, batch: int, first: int) -> tuple[float, int]:
    started, sent = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        sent += shop.send_events(clicks(first + sent, batch))["accepted"]
    return sent / (time.perf_counter() - started), sent


def client_paced(shop: RecsysClient, rate: float, seconds: float, batch: int, first: int):
    latencies, accepted, started = [], 0, time.perf_counter()
    for n in range(int(rate * seconds / batch)):
        scheduled = started + n * batch / rate
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        accepted += shop.send_events(clicks(first + n * batch, batch))["accepted"]
        latencies.append(time.perf_counter() - scheduled)
    return accepted / (time.perf_counter() - started), accepted, np.array(latencies)


async def count_topic(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    total, quiet_since = 0, time.monotonic()
    while time.monotonic() - quiet_since < 3.0:
        batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
        got = sum(len(records) for records in batches.values())
        total += got
        if got:
            quiet_since = time.monotonic()
    await consumer.stop()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    console = Console()
    with private_stack("bench-events", api_key=KEY) as stack:
        settings = stack.settings
        url = stack.start_api()
        raw = asyncio.run(raw_producer_rate(settings.kafka_bootstrap_servers, "raw-baseline", 50_000))
        with RecsysClient(url, api_key=KEY, timeout_seconds=30) as shop:
            full, full_sent = client_full_speed(shop, args.seconds, args.batch, 0)
            held, accepted, latency = client_paced(shop, args.rate, args.seconds, args.batch, full_sent)
        in_kafka = asyncio.run(count_topic(settings.kafka_bootstrap_servers, settings.topic_clicks))
    table = Table(title=f"POST /events, {args.batch} events per request")
    for column in ("measure", "events/s", "× raw aiokafka", "note"):
        table.add_column(column, justify="left" if column in ("measure", "note") else "right")
    table.add_row("raw aiokafka producer (acks=all)", f"{raw:,.0f}", "1.000", "")
    table.add_row("client, full speed", f"{full:,.0f}", f"{full / raw:.3f}", f"{full_sent:,} accepted")
    table.add_row(f"client paced at {args.rate:,.0f}/s", f"{held:,.0f}", f"{held / raw:.3f}",
                  f"request p50 {np.percentile(latency, 50) * 1000:.1f} ms, "
                  f"p99 {np.percentile(latency, 99) * 1000:.1f} ms")
    console.print(table)
    expected = full_sent + accepted
    verdict = "nothing lost" if in_kafka == expected else "MISMATCH"
    console.print(f"in Kafka: {in_kafka:,} clicks; accepted by the route: {expected:,} ({verdict})")
    save_results("events_route", {"raw_aiokafka": raw, "client_full_speed": full, "paced_rate": args.rate,
                                  "paced_held": held, "request_p50_s": float(np.percentile(latency, 50)),
                                  "request_p99_s": float(np.percentile(latency, 99)),
                                  "accepted": expected, "in_kafka": in_kafka})


if __name__ == "__main__":
    main()
