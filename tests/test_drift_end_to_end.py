"""A running worker turns a falling hit-rate and a jump in order values into Kafka events (real servers)."""

import time

import msgspec
import pytest
from kafka import KafkaConsumer, KafkaProducer

from offline.private_stack import wait_until_processed
from streams.events import ClickEvent, DriftAlert, OrderLine, PurchaseEvent, RetrainRequest, encode_event
from streams.local_stack import stop_pid
from streams.recommendation_store import read_recommendations
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker

pytestmark = pytest.mark.integration

SHOPPERS = 300
HITTING = 100  # the first shoppers buy from their list; the rest buy elsewhere


def first_record(settings, topic, decode_as, timeout_ms=30000):
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=timeout_ms, group_id=None)
    try:
        for record in consumer:
            return msgspec.json.decode(record.value, type=decode_as)
        return None
    finally:
        consumer.close()


def test_a_falling_hit_rate_requests_a_retrain_and_dearer_orders_raise_a_drift_alert(stack_settings, redis_client,
                                                                                    tmp_path):
    settings = stack_settings
    ensure_topics(settings)
    worker = spawn_worker(settings, tmp_path / "worker.log")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
    start = time.time() - 3600

    def send(topic, event):
        producer.send(topic, key=event.user_id.encode(), value=encode_event(event))

    try:
        for n in range(5):  # something popular to recommend
            send(settings.topic_purchases, PurchaseEvent(f"w{n}", f"early{n}", f"wo{n}",
                                                          [OrderLine(i, 1, 2.0) for i in "ABCDEFGH"], start))
        for n in range(SHOPPERS):
            send(settings.topic_clicks, ClickEvent(f"v{n}", f"s{n}", "A", "view", start + 10 + n))
        producer.flush()
        sent = 5 + SHOPPERS
        assert wait_until_processed(redis_client, sent, worker, timeout=90) == sent
        for n in range(SHOPPERS):
            listed = read_recommendations(redis_client, f"s{n}").items
            hit = n < HITTING
            item, price = (listed[0], 2.0) if hit else (f"elsewhere-{n}", 80.0)
            send(settings.topic_purchases, PurchaseEvent(f"p{n}", f"s{n}", f"o{n}", [OrderLine(item, 3, price)],
                                                          start + 1000 + n))
        producer.flush()
        sent += SHOPPERS
        assert wait_until_processed(redis_client, sent, worker, timeout=90) == sent

        request = first_record(settings, settings.topic_retrain_requests, RetrainRequest)
        assert request is not None, (tmp_path / "worker.log").read_text()[-2000:]
        assert request.baseline_hit_rate > 0.9 and request.current_hit_rate < 0.7 * request.baseline_hit_rate
        assert HITTING < request.purchases_seen <= SHOPPERS
        alert = first_record(settings, settings.topic_drift_alerts, DriftAlert)
        assert alert is not None and alert.statistic == "order_value" and alert.now > 3 * alert.before
    finally:
        producer.close()
        worker.terminate()
        worker.wait(timeout=20)
        stop_pid(worker.pid)
