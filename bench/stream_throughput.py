"""Stream throughput: events/s through the full worker pipeline, beside raw aiokafka and a no-op Faust agent.

On a private stack (Tansu in memory, Redis), the script publishes the events of
a simulated shop (clicks and purchases, keyed by customer) once, trains and
publishes a model on that shop, then consumes the same events four ways, each
from the beginning with a consumer group of its own:

* raw aiokafka: a consumer that only counts messages (what the broker and
  client allow);
* a no-op Faust agent: ``take_events`` batches, counted, nothing else (Faust's
  own cost);
* the no-op agent with the product's session table (RocksDB and its changelog),
  written once per customer per batch: the floor under any product work;
* the product: ``recsys worker`` processes (validation, session features,
  online segments, re-ranking with the offline model, attribution and feedback,
  one pipelined Redis write per batch, online summaries), 1 and 2 together.

A rate counts from the first event handled to the last, so start-up and group
joins are left out. Events per CPU-second (the process's user and system time
meanwhile) is what a process does with a core of its own: the scale-out figure
for workers on separate cores with the broker elsewhere. Prints a table; writes bench/results/stream_throughput.json.
With ``--profile``, py-spy samples the single worker while it processes: the
script prints where its time goes (the share of samples in each part of the
worker: pipeline stages and hooks, Faust, the Kafka consumer thread and producer;
and the functions with the most samples of their own) and keeps the collapsed stacks in
bench/results/worker_profile.txt (open them in speedscope.app or flamegraph.pl).

Run: .venv/bin/python bench/stream_throughput.py [--users 3000] [--workers 1 2] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import re
import threading
import time
from collections import Counter
from typing import NamedTuple
from pathlib import Path

import psutil
import redis
from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from offline.release import train_and_publish
from offline.private_stack import private_stack
from offline.replay import event_topics, platform_events
from offline.simulator import simulate_history
from streams.events import encode_event, event_key
from streams.local_stack import stop_pid
from streams.recommendation_store import read_event_stats
from streams.settings import Settings, settings_env
from streams.worker import spawn

from bench_results import RESULTS_DIR, save_results

NOOP_AGENT = Path(__file__).parent / "noop_agent.py"
PROFILE = RESULTS_DIR / "worker_profile.txt"


def publish_events(settings: Settings, users: int) -> tuple[int, "object"]:
    """Publish a simulated shop's clicks and purchases; return the event count and the history."""
    history = simulate_history(n_users=users, days=60, seed=1)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20,
                             batch_size=1024 * 1024, acks=1)
    topics = event_topics(settings)
    sent = 0
    for kind, event in platform_events(history):
        producer.send(topics[kind], key=event_key(event), value=encode_event(event))
        sent += 1
    producer.flush()
    producer.close()
    return sent, history


async def raw_aiokafka(settings: Settings, expected: int) -> float:
    consumer = AIOKafkaConsumer(settings.topic_clicks, settings.topic_purchases,
                                bootstrap_servers=settings.kafka_bootstrap_servers, group_id="bench-raw",
                                auto_offset_reset="earliest", max_poll_records=5000)
    await consumer.start()
    try:
        seen, first = 0, None
        while seen < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                if first is None and records:
                    first = time.perf_counter()
                seen += len(records)
        return seen / (time.perf_counter() - first)
    finally:
        await consumer.stop()


class Rate(NamedTuple):
    events_per_second: float
    events_per_cpu_second: float  # what one process does with a core of its own


def cpu_seconds(processes: list[subprocess.Popen]) -> float:
    times = [psutil.Process(process.pid).cpu_times() for process in processes]
    return sum(t.user + t.system for t in times)


def counted_rate(expected: int, processes: list[subprocess.Popen], count, timeout: float) -> Rate:
    """Events/s from the first event counted to ``expected``, polling ``count()``; and events per
    CPU-second the processes spent meanwhile."""
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = count()
        if seen and first is None:
            first, first_seen, first_cpu = time.perf_counter(), seen, cpu_seconds(processes)
        if seen >= expected:
            elapsed, used = time.perf_counter() - first, cpu_seconds(processes) - first_cpu
            return Rate((seen - first_seen) / elapsed, (seen - first_seen) / used)
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a process exited with {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"only {count()} of {expected} events within {timeout:.0f} s")


def noop_faust(settings: Settings, expected: int, workdir: Path, with_table: bool = False) -> Rate:
    client = redis.Redis.from_url(settings.redis_url)
    client.delete("bench:noop")
    env = {**settings_env(settings.replace(app_id="bench-noop-table" if with_table else "bench-noop")),
           "PATH": "/usr/bin:/bin", "NOOP_SESSION_TABLE": "1" if with_table else "0"}
    with open(workdir / "noop.log", "ab") as log:
        process = subprocess.Popen([sys.executable, str(NOOP_AGENT), "worker", "-l", "warn"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return counted_rate(expected, [process], lambda: int(client.get("bench:noop") or 0), timeout=600)
    finally:
        stop_pid(process.pid)


def profile_when_busy(process: subprocess.Popen, count, seconds: int) -> threading.Thread:
    """Once the worker has handled its first events, py-spy samples it for ``seconds``."""
    def record() -> None:
        while not count() and process.poll() is None:
            time.sleep(0.05)
        result = subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(process.pid),
                                 "--duration", str(seconds), "--nonblocking", "--format", "raw",
                                 "--output", str(PROFILE)], capture_output=True, text=True, check=False)
        if result.returncode:
            print(f"py-spy could not profile the worker: {result.stderr.strip()[-300:]}", file=sys.stderr)
    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    return thread


def product_workers(settings: Settings, expected: int, workers: int, workdir: Path, profile_seconds: int = 0) -> Rate:
    client = redis.Redis.from_url(settings.redis_url)
    client.delete("stats:events")
    group = settings.replace(app_id=f"bench-product-{workers}")
    processes = [spawn(group.replace(worker_web_port=settings.worker_web_port + n), "worker",
                       workdir / f"worker-{workers}-{n}.log") for n in range(workers)]

    def count() -> int:
        return sum(read_event_stats(client).values())

    profiler = profile_when_busy(processes[0], count, profile_seconds) if profile_seconds else None
    try:
        return counted_rate(expected, processes, count, timeout=900)
    finally:
        if profiler is not None:
            profiler.join(timeout=profile_seconds + 30)
        for process in processes:
            stop_pid(process.pid, grace_seconds=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000, help="simulated customers (3000: about 118k events)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure")
    parser.add_argument("--profile", type=int, nargs="?", const=15, default=0, metavar="SECONDS",
                        help="sample the single worker with py-spy for SECONDS (15) and print where its time goes")
    args = parser.parse_args()
    if args.profile < 0:
        parser.error("--profile takes a positive number of seconds")
    console = Console(width=150)
    rows = []
    with private_stack("bench-throughput", archive_dir="", log_level="warning") as stack:
        settings = stack.settings
        started = time.perf_counter()
        expected, history = publish_events(settings, args.users)
        console.print(f"published {expected:,} events in {time.perf_counter() - started:.1f} s")
        train_and_publish(settings, history, None, "simulator", True, lambda m: None)
        raw = asyncio.run(raw_aiokafka(settings, expected))
        rows.append({"measure": "raw aiokafka consumer (count only)", "events_per_second": raw})
        noop = noop_faust(settings, expected, stack.workdir)
        rows.append({"measure": "no-op Faust agent (take_events, count only)", **noop._asdict()})
        floor = noop_faust(settings, expected, stack.workdir, with_table=True)
        rows.append({"measure": "no-op agent + the session table (a write per customer per batch)",
                     **floor._asdict()})
        for workers in args.workers:
            rate = product_workers(settings, expected, workers, stack.workdir, args.profile if workers == 1 else 0)
            rows.append({"measure": f"recsys worker x{workers} (full pipeline, offline model)", **rate._asdict()})
    table = Table("measure", "events/s", "x raw aiokafka", "x no-op Faust agent", "events per CPU-second",
                  title=f"stream throughput, {expected:,} events, 2 cores shared with the broker and Redis")
    for row in rows:
        row["ratio_to_raw"] = round(row["events_per_second"] / raw, 4)
        row["ratio_to_noop"] = round(row["events_per_second"] / noop.events_per_second, 4)
        per_cpu = row.get("events_per_cpu_second")
        table.add_row(row["measure"], f"{row['events_per_second']:,.0f}", f"{row['ratio_to_raw']:.3f}",
                      f"{row['ratio_to_noop']:.3f}", f"{per_cpu:,.0f}" if per_cpu else "")
    console.print(table)
    single = next((row for row in rows if row["measure"].startswith("recsys worker x1")), None)
    if single is not None:
        # A worker is one process bound by its GIL: with a core of its own and the broker elsewhere
        # it runs at its events per CPU-second, and workers add up until the partitions run out.
        console.print(f"scale-out with a core per worker and the broker elsewhere (from events per CPU-second): "
                      f"1 worker {single['events_per_cpu_second']:,.0f}/s, "
                      f"2 workers {2 * single['events_per_cpu_second']:,.0f}/s, "
                      f"up to TOPIC_PARTITIONS={settings.topic_partitions} workers")
    console.print("target: >= 10,000 events/s through the full pipeline with one worker, >= 0.8 x the no-op agent")
    save_results("stream_throughput", {"events": expected, "rows": rows})
    if args.profile and PROFILE.exists():
        print_profile(console, PROFILE)


def profile_area(frames: list[str]) -> str:
    """Which part of the worker a sampled stack is in."""
    for frame in reversed(frames):
        part = re.search(r"streams/pipeline/(hooks/)?(\w+)\.py", frame)
        if part and part.group(2) not in ("crash_guard", "batch"):
            return f"pipeline {'fold hook' if part.group(1) else 'stage'}: {part.group(2)}"
    if any("streams/pipeline/" in frame or "streams/event_pipeline.py" in frame for frame in frames):
        return "pipeline: crash guard, Redis progress"
    if frames[0].startswith("Thread._bootstrap"):
        return "Kafka consumer thread (fetch, decode)"
    if any("producer" in frame or "sender.py" in frame for frame in frames):
        return "Kafka producer (changelog, outbox)"
    if any("redis/" in frame for frame in frames):
        return "Redis client"
    return "Faust and asyncio, per message"


def print_profile(console: Console, path: Path, top: int = 15) -> None:
    """The share of samples in each part of the worker, and the functions with the most samples of their own."""
    areas: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, samples = stack.split(";"), int(count)
        total += samples
        areas[profile_area(frames)] += samples
        own[re.sub(r":\d+\)$", ")", frames[-1])] += samples
    if not total:
        return
    table = Table("part of the worker", "share of samples", title=f"worker profile, {total:,} samples")
    for area, samples in areas.most_common():
        table.add_row(area, f"{samples / total:.1%}")
    console.print(table)
    table = Table("function (file)", "own samples", title="functions with the most samples of their own")
    for frame, samples in own.most_common(top):
        table.add_row(frame[:110], f"{samples / total:.1%}")
    console.print(table)
    console.print(f"collapsed stacks: {path}")


if __name__ == "__main__":
    main()
