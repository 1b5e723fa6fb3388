"""Platform replay -> Kafka (Tansu) -> Faust worker process -> Redis, all real."""

import json
import signal

import pytest
from kafka import KafkaConsumer, KafkaProducer

from offline.private_stack import wait_until_processed
from offline.replay import replay, select_orders
from offline.retail_history import load_retail
from offline.simulator import simulate_history
from streams import redis_keys
from streams.dead_letters import REASON, SOURCE_OFFSET, SOURCE_TOPIC, read_headers
from streams.local_stack import stop_pid
from streams.recommendation_store import read_event_stats, read_recommendations
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(stack_settings, tmp_path):
    ensure_topics(stack_settings)
    process = spawn_worker(stack_settings, tmp_path / "worker.log")
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    finally:
        stop_pid(process.pid)
    # A stopped worker shuts down cleanly rather than crashing.
    assert process.returncode in (0, -signal.SIGTERM), (tmp_path / "worker.log").read_text()[-3000:]


def bad_events(settings):
    return [
        (settings.topic_clicks, b'{"event_id": "x1", "user_id": "u", "item_id": "A", "type": "view"'),
        (settings.topic_clicks, b'{"event_id": "x2", "user_id": "u", "item_id": "A", "type": "like", "ts": 1300000000}'),
        (settings.topic_purchases, json.dumps({"event_id": "x3", "user_id": "u", "order_id": "o", "ts": 1300000000,
                                               "lines": [{"item_id": "A", "quantity": -5, "unit_price": 1.0}]}).encode()),
        (settings.topic_purchases, b"\x00\x01binary"),
        (settings.topic_products, b'{"item_id": "A", "price": 3}'),
        (settings.topic_clicks, b'{"event_id": "x6", "user_id": "u", "item_id": "A", "type": "view", "ts": 1e12}'),
    ]


def produce(settings, records):
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for topic, value in records:
        producer.send(topic, key=b"u", value=value)
    producer.flush()
    producer.close()


def read_dead_letters(settings, expected):
    consumer = KafkaConsumer(settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, group_id=None)
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == expected:
            break
    consumer.close()
    return records


def test_replayed_history_gives_every_user_a_list_and_bad_events_dead_letters(stack_settings, worker, redis_client):
    orders = simulate_history(n_users=60, seed=11)
    bad = bad_events(stack_settings)
    produce(stack_settings, bad[:3])
    stats = replay(stack_settings, orders)
    produce(stack_settings, bad[3:])
    sent = sum(stats.sent.values())

    seen = wait_until_processed(redis_client, sent + len(bad), worker, timeout=90)
    counters = read_event_stats(redis_client)
    assert seen == sent + len(bad), counters
    # Nothing valid lost: every published event was processed once.
    assert counters[f"valid:{stack_settings.topic_clicks}"] == stats.sent[stack_settings.topic_clicks]
    assert counters[f"valid:{stack_settings.topic_purchases}"] == stats.sent[stack_settings.topic_purchases]
    assert counters[f"valid:{stack_settings.topic_products}"] == stats.sent[stack_settings.topic_products]
    assert counters[f"dead_letter:{stack_settings.topic_clicks}"] == 3
    assert counters[f"dead_letter:{stack_settings.topic_purchases}"] == 2
    assert counters[f"dead_letter:{stack_settings.topic_products}"] == 1

    for user in orders["user_id"].unique():
        listing = read_recommendations(redis_client, user)
        assert listing is not None and not listing.fallback, user
        assert listing.items and listing.model_version and listing.rec_id
        assert redis_client.hget(redis_keys.segment_bucket(user), user)  # every purchaser has an online segment
    assert read_recommendations(redis_client, "never-seen").fallback

    dead = read_dead_letters(stack_settings, len(bad))
    by_value = {record.value: read_headers(record.headers) for record in dead}
    assert set(by_value) == {value for _, value in bad}
    for topic, value in bad:
        headers = by_value[value]
        assert headers[SOURCE_TOPIC] == topic and headers[REASON] and headers[SOURCE_OFFSET].isdigit()
    assert "quantity -5" in by_value[bad[2][1]][REASON]
    assert "in the future" in by_value[bad[5][1]][REASON]


def test_real_online_retail_slice_reaches_redis(stack_settings, worker, redis_client, retail_csv):
    history, report = load_retail(retail_csv)
    assert report.rows_in == 541_909
    orders = select_orders(history, limit=150, start="2011-11-01")
    stats = replay(stack_settings, orders)
    sent = sum(stats.sent.values())
    assert wait_until_processed(redis_client, sent, worker, timeout=90) == sent
    for user in orders["user_id"].unique():
        listing = read_recommendations(redis_client, user)
        assert listing is not None and not listing.fallback and len(listing.items) == stack_settings.recs_count


def test_worker_archives_what_it_processed_for_the_trainer(stack_settings, redis_client, tmp_path):
    from offline.archive_loader import load_archive

    ensure_topics(stack_settings)
    process = spawn_worker(stack_settings, tmp_path / "worker.log")
    try:
        orders = simulate_history(n_users=30, seed=8)
        stats = replay(stack_settings, orders)
        sent = sum(stats.sent.values())
        assert wait_until_processed(redis_client, sent, process, timeout=90) == sent
    finally:
        process.terminate()  # a clean stop flushes the archive buffer
        process.wait(timeout=20)
    history, items = load_archive(stack_settings.archive_dir)
    assert len(history) == len(orders)
    assert set(history["order_id"]) == set(orders["order_id"])
    assert history.groupby("user_id")["quantity"].sum().to_dict() == orders.groupby("user_id")["quantity"].sum().to_dict()
    assert set(items["item_id"]) == set(orders["item_id"])
