"""The trainer's periodic mode wakes up early when a worker requests a retrain (real Kafka)."""

import pytest
from kafka import KafkaProducer

from offline.schedule import wait_for_retrain_request
from streams.events import RetrainRequest, encode_event
from streams.topic_admin import ensure_topics

pytestmark = pytest.mark.integration


def test_wait_returns_on_a_request_and_times_out_without_one(stack_settings):
    import time
    ensure_topics(stack_settings)
    round_started = time.time()
    assert wait_for_retrain_request(stack_settings, timeout=2, since=round_started) is False
    producer = KafkaProducer(bootstrap_servers=stack_settings.kafka_bootstrap_servers)
    producer.send(stack_settings.topic_retrain_requests, value=encode_event(RetrainRequest("v1", 0.4, 0.1, 500, 1.0)))
    producer.flush()
    producer.close()
    # A request sent while no one waited (say, during training) still counts for that round...
    assert wait_for_retrain_request(stack_settings, timeout=60, since=round_started) is True
    # ...but not for the next one.
    assert wait_for_retrain_request(stack_settings, timeout=2, since=time.time()) is False
