"""A committed offset past the end a broker reports: is the log really shorter (it started over),
or is the reported end short? Against the real Tansu broker."""

import asyncio
import time

import pytest
from faust.types import TP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams import redis_keys
from streams.kafka_transport import logs_started_over, record_times
from streams.log_positions import Position
from streams.log_reader import read_ranges
from streams.topic_admin import ensure_topics

pytestmark = pytest.mark.integration


def test_record_times_read_the_log_not_the_reported_end(stack_settings):
    started = time.time()
    settings = stack_settings
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20, batch_size=1 << 16)
    for _ in range(5000):
        producer.send(settings.topic_clicks, key=b"k", value=b"x" * 50, partition=0)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    reported_end = consumer.end_offsets([TopicPartition(settings.topic_clicks, 0)])
    consumer.close()
    written, empty = TP(settings.topic_clicks, 0), TP(settings.topic_clicks, 1)

    found = asyncio.run(record_times(settings, {written: 4999, empty: 10}))
    # The last record is there whatever end the broker reports (Tansu's may be short of 5000),
    # with the Kafka time it was written at.
    assert set(found) == {written}, reported_end
    assert started - 1 <= found[written] <= time.time() + 1
    assert asyncio.run(record_times(settings, {written: 5000})) == {}


def test_read_ranges_return_the_records_asked_for_without_waiting_out_the_timeout(stack_settings):
    settings = stack_settings
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for n in range(10):
        producer.send(settings.topic_clicks, key=b"k", value=f"m{n}".encode(), partition=1)
    producer.flush()
    producer.close()
    started = time.monotonic()
    found = asyncio.run(read_ranges(settings, {(settings.topic_clicks, 1): (3, 6)}, timeout_seconds=30))
    assert [(r.offset, r.value) for r in found[settings.topic_clicks, 1]] == [(n, f"m{n}".encode())
                                                                              for n in (3, 4, 5, 6)]
    assert time.monotonic() - started < 15  # done once the consumer is past the range


def test_a_log_started_over_only_where_the_committed_records_are_gone(stack_settings, redis_client):
    settings = stack_settings
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20, batch_size=1 << 16)
    for _ in range(50):
        producer.send(settings.topic_online_metrics, key=b"k", value=b"x", partition=0)
        producer.send(settings.topic_clicks, key=b"k", value=b"x", partition=0)
    producer.flush()
    producer.close()
    summaries, clicks = TP(settings.topic_online_metrics, 0), TP(settings.topic_clicks, 0)
    # Not counted in Redis: the record before the commit decides (the broker's end may be short of 50).
    assert asyncio.run(logs_started_over(settings, {summaries: 50})) == []
    assert asyncio.run(logs_started_over(settings, {summaries: 10_000})) == [summaries]
    # Counted: the record Redis counted last must be there at the same Kafka time.
    written = asyncio.run(record_times(settings, {clicks: 49}))[clicks]
    key, source = redis_keys.counted_positions(settings.app_id), f"{clicks.topic}:{clicks.partition}"
    redis_client.hset(key, source, Position(49, written).encode())
    assert asyncio.run(logs_started_over(settings, {clicks: 50})) == []
    redis_client.hset(key, source, Position(49, written - 60).encode())  # a record of another log
    assert asyncio.run(logs_started_over(settings, {clicks: 50})) == [clicks]
