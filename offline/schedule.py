"""Periodic retraining (`recsys train --every 6h`), which also honours workers' retrain requests."""

from __future__ import annotations

import re
import time
from typing import Callable

import typer
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from streams.connections import kafka_options
from streams.settings import Settings

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    match = _INTERVAL.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not an interval like 30m, 6h or 1d", param_hint="--every")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def wait_for_retrain_request(settings: Settings, timeout: float, since: float) -> bool:
    """Wait up to ``timeout`` seconds; True as soon as there is a retrain request sent after ``since``
    (Unix time), including one sent while the previous round was training."""
    consumer = KafkaConsumer(**kafka_options(settings), group_id=None,
                             enable_auto_commit=False)
    try:
        topic = settings.topic_retrain_requests
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            time.sleep(timeout)
            return False
        consumer.assign(partitions)
        consumer.seek_to_beginning()  # requests are rare: reading them all and filtering by time is cheap
        deadline = time.monotonic() + timeout
        since_ms = since * 1000
        while (left := deadline - time.monotonic()) > 0:
            for records in consumer.poll(timeout_ms=int(min(left, 5.0) * 1000)).values():
                if any(record.timestamp >= since_ms for record in records):
                    return True
        return False
    finally:
        consumer.close()


def run_periodically(run: Callable[[], str], interval: float, settings: Settings, console: Console,
                     wait: Callable[[float], bool] | None = None, rounds: int | None = None) -> None:
    """Run, then wait ``interval`` seconds or until a worker requests a retrain, forever (or ``rounds``
    times); a failed round is reported and retried at the next."""
    done = 0
    while rounds is None or done < rounds:
        started = time.time()
        try:
            version = run()
            console.print(f"trained {version}; next run in {interval:.0f} s or on a retrain request")
        except Exception as exc:  # a bad round must not end the schedule
            console.print(f"[red]training failed:[/red] {exc}; retrying in {interval:.0f} s")
        done += 1
        if rounds is None or done < rounds:
            requested = wait(interval) if wait else wait_for_retrain_request(settings, interval, since=started)
            if requested:
                console.print("a worker requested a retrain: the model's online hit-rate dropped")
