"""Train on simulated history, publish, and watch a running worker switch versions."""

import time

import pytest
from kafka import KafkaProducer

from offline.cli import train_and_publish
from offline.simulator import simulate_history
from streams.events import ClickEvent, encode_event
from streams.local_stack import stop_pid
from streams.recommendation_store import read_recommendations
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration


def click(settings, user, item, n):
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    event = ClickEvent(f"hot-{n}", user, item, "view", time.time())
    producer.send(settings.topic_clicks, key=user.encode(), value=encode_event(event))
    producer.flush()
    producer.close()


def wait_for_version(client, user, version, timeout=60.0):
    deadline = time.monotonic() + timeout
    listing = None
    while time.monotonic() < deadline:
        listing = read_recommendations(client, user)
        if listing is not None and listing.model_version == version and not listing.fallback:
            return listing
        time.sleep(0.2)
    raise AssertionError(f"no list of {version} for {user}; last seen {listing}")


def test_published_version_reaches_redis_and_a_running_worker_switches(stack_settings, redis_client, tmp_path):
    settings = stack_settings.replace(artifact_dir=str(tmp_path / "artifacts"))
    ensure_topics(settings)
    history = simulate_history(n_users=120, seed=5)
    user = history["user_id"].iat[-1]
    item = history["item_id"].iat[0]
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        first = train_and_publish(settings, history, None, "simulator", publish=True, step=lambda m: None)
        # Publishing bulk-wrote every customer's list and the segment of each.
        listing = read_recommendations(redis_client, user)
        assert listing.model_version == first and len(listing.items) == settings.recs_count
        assert redis_client.get(f"segment:{user}") is not None
        assert redis_client.get(f"similar:{item}") is not None

        click(settings, user, item, 1)
        wait_for_version(redis_client, user, first)

        second = train_and_publish(settings, history.iloc[:-50], None, "simulator", publish=True, step=lambda m: None)
        assert second != first
        redis_client.delete(f"recs:{user}")
        click(settings, user, item, 2)
        served = wait_for_version(redis_client, user, second, timeout=30)
        assert served.rec_id and served.items
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        stop_pid(worker.pid)
