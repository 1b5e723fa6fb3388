"""Faults against real servers: a killed worker, a Redis outage, scale-out and scale-in, a restarted broker.

Each test compares what the worker ends up holding with a batch recomputation
of the same events (``expected_sessions``): no event lost, none counted twice.
"""

import json
import os
import signal
import time
import urllib.error
import urllib.request

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor

from offline.private_stack import wait_until_processed
from offline.replay import event_topics, platform_events, replay
from offline.simulator import simulate_history
from streams.dead_letters import SOURCE_OFFSET, read_headers
from streams.events import encode_event, event_key
from streams.local_stack import free_port, kafka_command, redis_binary, start_server, stop_pid
from streams.recommendation_store import read_event_stats, read_recommendations
from streams.session_features import update_session_features
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration


def expected_sessions(orders, settings) -> dict:
    """Session features per customer from all their events, applied in time order, once each."""
    features = {}
    for _, event in sorted(platform_events(orders), key=lambda pair: pair[1].ts):
        features[event.user_id], _ = update_session_features(
            features.get(event.user_id), event, settings.session_gap_seconds, settings.session_recent_items)
    return features


def summary(features) -> dict:
    """What must match exactly: events per type, units bought, and the purchase statistics."""
    customer = features["customer"] if isinstance(features, dict) else features.customer
    counts = features["counts"] if isinstance(features, dict) else features.counts
    units = features["units_purchased"] if isinstance(features, dict) else features.units_purchased
    get = customer.get if isinstance(customer, dict) else lambda name, default=None: getattr(customer, name)
    return {"counts": dict(counts), "units_purchased": units, "orders": get("orders", 0), "lines": get("lines", 0),
            "units": get("units", 0), "spend": round(get("spend", 0.0), 2)}


def held_session(port: int, user: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sessions/{user}", timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def assert_sessions_match(expected: dict, ports: list[int]) -> None:
    mismatched = {}
    for user, features in expected.items():
        held = next((s for s in (held_session(port, user) for port in ports) if s is not None), None)
        if held is None or summary(held) != summary(features):
            mismatched[user] = (summary(features), held and summary(held))
    assert not mismatched, f"{len(mismatched)} of {len(expected)} customers differ, e.g. {list(mismatched.items())[:2]}"


def wait_until_quiet(client, at_least: int, workers, timeout: float = 180.0, quiet: float = 3.0) -> dict:
    """Until the counters reach ``at_least`` events and stop moving for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.poll() is None, f"a worker exited with {worker.returncode}"
        counters = read_event_stats(client)
        total = sum(counters.values())
        if total != last:
            last, since = total, time.monotonic()
        elif total >= at_least and time.monotonic() - since >= quiet:
            return counters
        time.sleep(0.25)
    raise AssertionError(f"the workers accounted for {last} of {at_least} events")


def records_of(settings, topic: str) -> list:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None)
    records = list(consumer)
    consumer.close()
    return records


def dead_letters(settings) -> list:
    return records_of(settings, settings.topic_dead_letters)


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    finally:
        stop_pid(process.pid)


def test_a_worker_killed_mid_replay_restarts_without_losing_or_double_counting(stack_settings, redis_client,
                                                                                 tmp_path):
    settings = stack_settings
    ensure_topics(settings)
    orders = simulate_history(n_users=400, seed=21)
    worker = spawn_worker(settings, tmp_path / "worker.log")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    bad = []

    def interleave_bad_events(n, total):  # every 1,000 events, one that is not JSON
        bad.append(f"not json {n}".encode())
        producer.send(settings.topic_clicks, key=b"u-bad", value=bad[-1])

    stats = replay(settings, orders, on_progress=interleave_bad_events, producer=producer)
    producer.close()
    sent = sum(stats.sent.values()) + len(bad)
    wait_until_processed(redis_client, sent // 3, worker, timeout=120)
    os.kill(worker.pid, signal.SIGKILL)  # mid-replay, nothing flushed or committed on the way out
    worker.wait(timeout=10)
    assert sum(read_event_stats(redis_client).values()) < sent, "the replay finished before the kill"

    restarted = spawn_worker(settings, tmp_path / "worker.log")
    try:
        counters = wait_until_quiet(redis_client, sent, [restarted])
        # The broker holds each bad event once (a producer retry could append one twice).
        in_log = sorted(r.value for r in records_of(settings, settings.topic_clicks) if r.value.startswith(b"not json"))
        assert in_log == sorted(bad), f"the clicks topic holds {len(in_log)} bad events, {len(bad)} sent"
        # Counted and dead-lettered exactly once, whatever the kill interrupted: no duplicates, nothing missing.
        sent_to_dlq = [(record.value, read_headers(record.headers).get(SOURCE_OFFSET)) for record in dead_letters(settings)]
        assert sorted(value for value, _ in sent_to_dlq) == sorted(bad), sent_to_dlq
        assert counters == {**{f"valid:{topic}": n for topic, n in stats.sent.items()},
                            f"dead_letter:{settings.topic_clicks}": len(bad)}, sent_to_dlq
        assert_sessions_match(expected_sessions(orders, settings), [settings.worker_web_port])
        for user in orders["user_id"].unique():
            assert not read_recommendations(redis_client, user).fallback
    finally:
        stop(restarted)


def test_a_redis_outage_holds_the_worker_back_and_it_catches_up_without_skipping(stack_settings, tmp_path):
    # A Redis of the test's own, persisting as production does, so that it can be stopped and started.
    port = free_port()
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
               "--appendonly", "yes", "--appendfsync", "always"]
    server = start_server("redis", command, port, tmp_path / "redis.log")
    settings = stack_settings.replace(redis_url=f"redis://127.0.0.1:{port}/0", redis_max_backoff_seconds=1.0)
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_url)
    orders = simulate_history(n_users=150, seed=22)
    first, second = orders[orders["timestamp"] < orders["timestamp"].median()], \
        orders[orders["timestamp"] >= orders["timestamp"].median()]
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        sent = sum(replay(settings, first).sent.values())
        wait_until_processed(client, sent, worker, timeout=120)
        stop_pid(server.pid)  # Redis goes away mid-stream
        sent += sum(replay(settings, second).sent.values())
        time.sleep(10)
        assert worker.poll() is None, "the worker crashed while Redis was away"
        server = start_server("redis", command, port, tmp_path / "redis.log")
        wait_until_quiet(client, sent, [worker])
        # No event skipped: every customer's list reflects their newest event.
        for user, newest in orders.groupby("user_id")["timestamp"].max().items():
            listing = read_recommendations(client, user)
            assert listing is not None and not listing.fallback
            assert listing.event_ts == pytest.approx(newest.timestamp()), user
        assert "Redis is back after" in (tmp_path / "worker.log").read_text()
    finally:
        stop(worker)
        stop_pid(server.pid)


def test_two_workers_share_the_stream_and_one_takes_over_when_the_other_leaves(stack_settings, redis_client,
                                                                                 tmp_path):
    settings = stack_settings.replace(topic_partitions=4)
    ensure_topics(settings)
    second_settings = settings.replace(worker_web_port=free_port())
    orders = simulate_history(n_users=200, seed=23)
    cut = orders["timestamp"].quantile(0.6)
    first, second = orders[orders["timestamp"] < cut], orders[orders["timestamp"] >= cut]
    a = spawn_worker(settings, tmp_path / "a.log")
    b = spawn_worker(second_settings, tmp_path / "b.log")
    try:
        time.sleep(8)  # both join the group before the events arrive
        sent = sum(replay(settings, first).sent.values())
        wait_until_quiet(redis_client, sent, [a, b])
        ports = [settings.worker_web_port, second_settings.worker_web_port]
        holders = {port: sum(held_session(port, u) is not None for u in first["user_id"].unique()) for port in ports}
        assert all(holders.values()), f"one worker did all the work: {holders}"
        assert_sessions_match(expected_sessions(first, settings), ports)

        stop(b)  # scale in: a takes b's partitions and recovers their session state
        sent += sum(replay(settings, second).sent.values())
        wait_until_quiet(redis_client, sent, [a])
        assert_sessions_match(expected_sessions(orders, settings), [settings.worker_web_port])
    finally:
        stop(a)
        if b.poll() is None:
            stop(b)


def test_the_worker_rides_out_a_broker_restart(stack_settings, redis_client, tmp_path):
    # A broker of the test's own. In-memory Tansu forgets topics, offsets and changelogs when it
    # restarts (README, local-stack notes): the worker must reconnect, not crash, and serve new events.
    port = free_port()
    broker = start_server("kafka", kafka_command(port), port, tmp_path / "kafka.log")
    settings = stack_settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{port}", log_level="info")
    ensure_topics(settings)
    orders = simulate_history(n_users=80, seed=24)
    cut = orders["timestamp"].median()
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        sent = sum(replay(settings, orders[orders["timestamp"] < cut]).sent.values())
        wait_until_processed(redis_client, sent, worker, timeout=120)
        stop_pid(broker.pid)
        time.sleep(5)
        assert worker.poll() is None, "the worker crashed when the broker went away"
        broker = start_server("kafka", kafka_command(port), port, tmp_path / "kafka.log")
        ensure_topics(settings)  # as `recsys stack up` does
        later = orders[orders["timestamp"] >= cut]
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        topics = event_topics(settings)
        events = platform_events(later)
        deadline = time.monotonic() + 120
        # Until the worker has rejoined, what is sent waits in Kafka; send once, then wait.
        for kind, event in events:
            producer.send(topics[kind], key=event_key(event), value=encode_event(event))
        producer.flush()
        producer.close()
        while time.monotonic() < deadline and sum(read_event_stats(redis_client).values()) < sent + len(events):
            assert worker.poll() is None, "the worker crashed after the broker came back"
            time.sleep(0.5)
        time.sleep(3)  # the last batches land
        # Each event is counted valid exactly once (a producer retry across the restart may add
        # `duplicate:` counts, which are not valid ones), those the consumer skipped while the
        # group rejoined included: they are read back from the new log.
        counters = read_event_stats(redis_client)
        grown = sum(n for name, n in counters.items() if name.startswith("valid:")) - sent
        assert grown == len(events), counters
        for user in later["user_id"].unique():
            listing = read_recommendations(redis_client, user)
            assert listing.event_ts == pytest.approx(later[later["user_id"] == user]["timestamp"].max().timestamp())
    finally:
        stop(worker)
        stop_pid(broker.pid)


class FaustNamedAssignor(RangePartitionAssignor):
    name = "faust"


def test_messages_committed_but_never_processed_are_read_back_from_kafka(stack_settings, redis_client, tmp_path):
    # What a rebalance or an interrupted batch can leave behind: the group's commit past messages
    # Redis never counted. The worker reads them back instead of starting after them.
    settings = stack_settings
    ensure_topics(settings)
    orders = simulate_history(n_users=60, seed=25)
    cut = orders["timestamp"].median()
    first, second = orders[orders["timestamp"] < cut], orders[orders["timestamp"] >= cut]
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        sent = sum(replay(settings, first).sent.values())
        wait_until_quiet(redis_client, sent, [worker])
    finally:
        stop(worker)
    sent += sum(replay(settings, second).sent.values())
    partition = TopicPartition(settings.topic_clicks, 0)
    # A member of the worker's group, to commit for it: the broker refuses commits from outside,
    # and members that do not speak the group's assignment protocol.
    group = KafkaConsumer(settings.topic_clicks, bootstrap_servers=settings.kafka_bootstrap_servers,
                          group_id=settings.app_id, enable_auto_commit=False,
                          partition_assignment_strategy=[FaustNamedAssignor])
    try:
        deadline = time.monotonic() + 60
        while partition not in group.assignment() and time.monotonic() < deadline:
            group.poll(timeout_ms=1000)
        group.commit({partition: OffsetAndMetadata(group.committed(partition) + 20, "", -1)})
    finally:
        group.close()
    worker = spawn_worker(settings, tmp_path / "restarted.log")
    try:
        counters = wait_until_quiet(redis_client, sent, [worker])
        assert sum(counters.values()) == sent, counters
        assert_sessions_match(expected_sessions(orders, settings), [settings.worker_web_port])
        assert "did not deliver, read back from Kafka: 20 " in (tmp_path / "restarted.log").read_text()
    finally:
        stop(worker)


def test_a_partition_whose_log_started_over_is_read_from_the_start(stack_settings, redis_client, tmp_path):
    # What a broker that lost its data leaves behind when the group's last commits reach it after
    # the restart: committed offsets far beyond the end of every (new) partition.
    settings = stack_settings
    ensure_topics(settings)
    partitions = [TopicPartition(topic, n) for topic in (settings.topic_clicks, settings.topic_purchases,
                                                         settings.topic_products)
                  for n in range(settings.topic_partitions)]
    group = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.app_id,
                          enable_auto_commit=False)
    group.commit({tp: OffsetAndMetadata(10_000, "", -1) for tp in partitions})
    assert group.committed(partitions[0]) == 10_000
    group.close()
    orders = simulate_history(n_users=60, seed=25)
    sent = sum(replay(settings, orders).sent.values())
    worker = spawn_worker(settings, tmp_path / "worker.log")
    try:
        assert wait_until_processed(redis_client, sent, worker, timeout=120) == sent
        assert "its log started over" in (tmp_path / "worker.log").read_text()
    finally:
        stop(worker)
