"""Train on simulated history, publish, and watch a running worker switch versions."""

import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from offline.release import train_and_publish
from offline.simulator import simulate_history
from streams import redis_keys
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


def wait_for_version(settings, client, user, item, version, timeout=60.0):
    """Click every second until the worker answers with a list of ``version``; the swap is
    asynchronous, so a click that arrives just before it is served by the previous model."""
    deadline = time.monotonic() + timeout
    listing = None
    n = 0
    while time.monotonic() < deadline:
        n += 1
        click(settings, user, item, f"{version}-{n}")
        time.sleep(1.0)
        listing = read_recommendations(client, user)
        # event_ts is set only on lists the worker wrote in answer to an event (not by publishing).
        if listing is not None and listing.model_version == version and listing.event_ts is not None:
            return listing
    raise AssertionError(f"no list of {version} for {user}; last seen {listing}")


def keep_clicking(settings, shoppers, item, stop):
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    n = 0
    while not stop.is_set():
        for shopper in shoppers:
            n += 1
            event = ClickEvent(f"fence-{n}", shopper, item, "view", time.time())
            producer.send(settings.topic_clicks, key=shopper.encode(), value=encode_event(event))
        producer.flush()
        time.sleep(0.25)
    producer.close()


def keep_reading(client, seen, reads, stop):
    """Each shopper's list versions in the order a storefront would have read them."""
    while not stop.is_set():
        for shopper, versions in seen.items():
            listing = read_recommendations(client, shopper)
            reads["lists"] += 1
            if listing is not None and (not versions or versions[-1] != listing.model_version):
                versions.append(listing.model_version)


def test_published_version_reaches_redis_and_a_running_worker_switches(stack_settings, redis_client, tmp_path):
    settings = stack_settings.replace(artifact_dir=str(tmp_path / "artifacts"))
    ensure_topics(settings)
    history = simulate_history(n_users=120, seed=5)
    user = history["user_id"].iat[-1]
    item = history["item_id"].iat[0]
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        first = train_and_publish(settings, history, None, "simulator", publish=True, step=lambda m: None).version
        # Publishing bulk-wrote every customer's list and the segment of each.
        listing = read_recommendations(redis_client, user)
        assert listing.model_version == first and len(listing.items) == settings.recs_count
        assert redis_client.hget(redis_keys.segment_bucket(user), user) is not None
        assert redis_client.get(f"similar:{item}") is not None

        wait_for_version(settings, redis_client, user, item, first)

        # Shoppers keep clicking while the next version is published, and readers poll their lists.
        shoppers = list(history["user_id"].unique()[:40])
        seen, reads, stop = {shopper: [] for shopper in shoppers}, Counter(), threading.Event()
        threads = [threading.Thread(target=keep_clicking, args=(settings, shoppers, item, stop)),
                   threading.Thread(target=keep_reading, args=(redis_client, seen, reads, stop))]
        for thread in threads:
            thread.start()
        try:
            second = train_and_publish(settings, history.iloc[:-50], None, "simulator", publish=True,
                                       step=lambda m: None).version
            served = wait_for_version(settings, redis_client, user, item, second, timeout=90)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert second > first and served.rec_id and served.items
        assert reads["lists"] > 500
        went_back = {shopper: versions for shopper, versions in seen.items()
                     if any(later < earlier for earlier, later in zip(versions, versions[1:]))}
        assert went_back == {}, "a reader saw an older version after a newer one"
        assert any(second in versions for versions in seen.values())
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        stop_pid(worker.pid)


def test_a_worker_started_after_a_publish_answers_its_first_events_with_that_version(stack_settings, redis_client,
                                                                                    tmp_path):
    settings = stack_settings.replace(artifact_dir=str(tmp_path / "artifacts"))
    ensure_topics(settings)
    history = simulate_history(n_users=600, seed=6)
    version = train_and_publish(settings, history, None, "simulator", publish=True, step=lambda m: None).version
    shoppers = list(history["user_id"].unique()[:20])
    item = history["item_id"].iat[0]
    # The events wait in the topic: the worker meets them the moment it joins, while it loads the model.
    for n, shopper in enumerate(shoppers):
        click(settings, shopper, item, f"first-{n}")
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        deadline, answered = time.monotonic() + 60, {}
        while time.monotonic() < deadline and len(answered) < len(shoppers):
            for shopper in shoppers:
                listing = read_recommendations(redis_client, shopper)
                if listing is not None and listing.event_ts is not None:
                    answered[shopper] = listing.model_version
            time.sleep(0.2)
        # A list computed before the model was loaded would have been refused (older than the
        # published one), leaving the shopper's first event unanswered.
        assert answered == {shopper: version for shopper in shoppers}
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        stop_pid(worker.pid)
