"""A worker whose agent fails stops with a non-zero status, and its restart catches up (real servers)."""

import subprocess
import time

import pytest
from kafka import KafkaProducer

from streams import redis_keys
from streams.events import ClickEvent, encode_event
from streams.local_stack import free_port, stop_pid
from streams.recommendation_store import read_event_stats, read_recommendations
from streams.topic_admin import ensure_topics
from streams.agent_failures import EXIT_AGENT_FAILED
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration


def wait_for_exit(process, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_a_failing_agent_stops_the_worker_and_a_restart_processes_the_batch(stack_settings, redis_client, tmp_path):
    ensure_topics(stack_settings)
    # A key of the wrong type makes every counter update fail: not an outage to wait out, a fault.
    redis_client.set(redis_keys.EVENT_STATS, "not a hash")
    log = tmp_path / "worker.log"
    worker = spawn_worker(stack_settings, log)
    try:
        producer = KafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap_servers)
        event = ClickEvent("c1", "u1", "A", "view", time.time())
        producer.send(stack_settings.topic_clicks, key=b"u1", value=encode_event(event))
        producer.flush()
        producer.close()
        assert wait_for_exit(worker, timeout=90) == EXIT_AGENT_FAILED, log.read_text()[-3000:]
        assert "the user-events agent failed" in log.read_text()
    finally:
        stop_pid(worker.pid)

    redis_client.delete(redis_keys.EVENT_STATS)
    restarted = spawn_worker(stack_settings, log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and sum(read_event_stats(redis_client).values()) < 1:
            time.sleep(0.25)
        counters = read_event_stats(redis_client)
        # The event is processed once in all: as valid, or as a redelivery the table had already applied.
        assert counters.get(f"valid:{stack_settings.topic_clicks}", 0) + \
            counters.get(f"duplicate:{stack_settings.topic_clicks}", 0) == 1, counters
        listing = read_recommendations(redis_client, "u1")
        assert listing is not None and not listing.fallback
    finally:
        restarted.terminate()
        restarted.wait(timeout=20)
        stop_pid(restarted.pid)


@pytest.mark.parametrize("missing", ["redis", "kafka"])
def test_a_worker_started_without_redis_or_kafka_says_it_waits_and_stops_on_sigterm(stack_settings, tmp_path, missing):
    ensure_topics(stack_settings)
    dead = free_port()
    settings = stack_settings.replace(**({"redis_url": f"redis://:s3cret@127.0.0.1:{dead}/0"} if missing == "redis"
                                         else {"kafka_bootstrap_servers": f"127.0.0.1:{dead}"}))
    log_path = tmp_path / "worker.log"
    worker = spawn_worker(settings, log_path)
    try:
        deadline = time.monotonic() + 15
        while "still retrying" not in log_path.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, log_path.read_text()[-2000:]
            time.sleep(0.2)
        text = log_path.read_text()
        assert f"127.0.0.1:{dead}" in text and "still retrying" in text
        assert "s3cret" not in text and "Ready" not in text
        worker.terminate()
        assert wait_for_exit(worker, 10) is not None, "SIGTERM did not stop a waiting worker"
    finally:
        stop_pid(worker.pid)
