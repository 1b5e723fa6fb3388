"""Poison events, fuzzed with hypothesis: raw bytes and near-valid JSON into every input topic.

Each mutation breaks the contract by construction (a missing or mistyped field,
a value out of bounds, truncated or non-UTF-8 bytes), so every poison payload
must reach the dead-letter topic with a reason, and every valid event sent
between them must still be processed.
"""

import json
import re
import time
import uuid
from collections import Counter

import pytest
import redis
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from kafka import KafkaConsumer, KafkaProducer

from offline.replay import event_topics
from streams.dead_letters import REASON, SOURCE_TOPIC, read_headers
from streams.events import ClickEvent, encode_event
from streams.local_stack import free_port, stop_pid
from streams.recommendation_store import read_event_stats
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.validation import EventValidator, InvalidEvent
from streams.worker import spawn_worker

NOW = 1_600_000_000.0
VALID = {
    "clicks": {"event_id": "e1", "user_id": "u1", "item_id": "85123A", "type": "view", "ts": NOW},
    "purchases": {"event_id": "p1", "user_id": "u1", "order_id": "o1", "ts": NOW,
                  "lines": [{"item_id": "85123A", "quantity": 2, "unit_price": 2.55}]},
    "products": {"item_id": "85123A", "title": "WHITE HANGING HEART T-LIGHT HOLDER", "price": 2.55},
}
REQUIRED = {"clicks": ["event_id", "user_id", "item_id", "type", "ts"],
            "purchases": ["event_id", "user_id", "order_id", "lines", "ts"], "products": ["item_id", "title"]}
BAD_IDS = st.sampled_from(["", "has space", "tab\there", "x" * 129, "new\nline", "\x7f"])
WRONG_TYPES = st.sampled_from([None, [], {}, True])


@st.composite
def near_valid(draw, kind: str) -> bytes:
    """A valid event of ``kind`` with one mutation that breaks the contract."""
    event = json.loads(json.dumps(VALID[kind]))
    mutation = draw(st.sampled_from(["drop", "retype", "bad_id", "bounds", "truncate", "not_utf8", "oversize"]))
    if mutation == "drop":
        del event[draw(st.sampled_from(REQUIRED[kind]))]
    elif mutation == "retype":
        event[draw(st.sampled_from(REQUIRED[kind]))] = draw(WRONG_TYPES)
    elif mutation == "bad_id":
        event[draw(st.sampled_from([f for f in REQUIRED[kind] if f.endswith("_id")]))] = draw(BAD_IDS)
    elif mutation == "bounds":
        if kind == "clicks":
            event.update(draw(st.sampled_from([{"type": "wishlist"}, {"ts": 946684799.0}, {"ts": 1e12}])))
        elif kind == "purchases":
            line = event["lines"][0]
            line.update(draw(st.sampled_from([{"quantity": 0}, {"quantity": -3}, {"quantity": 10**7},
                                              {"unit_price": 0}, {"unit_price": -1.5}, {"unit_price": 1e9}])))
            if draw(st.booleans()):
                event["lines"] = []
        else:
            event.update(draw(st.sampled_from([{"price": -1.0}, {"price": 1e9}, {"title": "   "}])))
    raw = json.dumps(event).encode()
    if mutation == "truncate":
        raw = raw[:draw(st.integers(min_value=0, max_value=len(raw) - 1))]
    elif mutation == "not_utf8":
        raw = raw[:5] + b"\xff\xfe" + raw[5:]
    elif mutation == "oversize":
        raw = json.dumps({**event, "padding": "x" * 70_000}).encode()
    return raw


def poison(kind: str):
    # Random bytes that happen to be a whole valid event are as likely as never.
    return st.one_of(near_valid(kind), st.binary(max_size=300))


ANY_POISON = st.sampled_from(list(VALID)).flatmap(lambda kind: st.tuples(st.just(kind), poison(kind)))


@given(ANY_POISON)
@hypothesis_settings(max_examples=400, deadline=None)
def test_the_validator_refuses_every_poison_payload_with_a_reason_and_nothing_else(kind_and_payload):
    kind, payload = kind_and_payload
    with pytest.raises(InvalidEvent) as refused:
        EventValidator(Settings()).validate(kind, payload)
    assert str(refused.value)


@pytest.fixture(scope="module")
def poison_worker(kafka_server, redis_server, tmp_path_factory):
    run = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("poison")
    # A Redis database of the module's own: no model published by another test fences its lists.
    settings = Settings(kafka_bootstrap_servers=kafka_server.url, redis_url=module_redis_url(redis_server),
                        stack_state_dir=str(workdir), archive_dir="", artifact_dir=str(workdir / "artifacts"),
                        topic_partitions=2, app_id=f"recsys-poison-{run}", worker_web_port=free_port(),
                        log_level="warning",
                        **{f"topic_{kind}": f"{kind}-{run}" for kind in
                           ("clicks", "purchases", "products", "dead_letters", "model_updates", "feedback",
                            "retrain_requests", "drift_alerts", "online_metrics")})
    ensure_topics(settings)
    worker = spawn_worker(settings, workdir / "worker.log")
    yield settings, worker
    worker.terminate()
    worker.wait(timeout=20)
    stop_pid(worker.pid)


def module_redis_url(redis_server) -> str:
    return redis_server.url.rsplit("/", 1)[0] + "/5"


@pytest.fixture(scope="module")
def redis_client_module(redis_server):
    client = redis.Redis.from_url(module_redis_url(redis_server))
    client.flushdb()
    yield client
    client.close()


def dead_letters_keyed(settings, key: bytes) -> list:
    """Every dead letter whose original message had ``key`` (dead letters keep the key)."""
    consumer = KafkaConsumer(settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None)
    records = [record for record in consumer if record.key == key]
    consumer.close()
    return records


@pytest.mark.integration
@given(payloads=st.lists(ANY_POISON, min_size=15, max_size=40))
@hypothesis_settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_poison_lands_in_dead_letters_and_the_valid_events_between_are_processed(poison_worker, redis_client_module,
                                                                               payloads):
    settings, worker = poison_worker
    topics = {**event_topics(settings), "products": settings.topic_products}
    before_counters = Counter(read_event_stats(redis_client_module))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    example = uuid.uuid4().hex[:8]
    key = f"poison-{example}".encode()
    for n, (kind, payload) in enumerate(payloads):
        producer.send(topics[kind], key=key, value=payload)
        valid = ClickEvent(f"{example}-{n}", f"shopper-{example}-{n % 5}", "85123A", "view", time.time())
        producer.send(settings.topic_clicks, key=valid.user_id.encode(), value=encode_event(valid))
    producer.flush()
    producer.close()

    expected = 2 * len(payloads)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker crashed on poison"
        grown = Counter(read_event_stats(redis_client_module)) - before_counters
        if sum(grown.values()) >= expected:
            break
        time.sleep(0.2)
    grown = Counter(read_event_stats(redis_client_module)) - before_counters
    sent_per_topic = Counter(topics[kind] for kind, _ in payloads)
    assert {topic: grown[f"dead_letter:{topic}"] for topic in sent_per_topic} == dict(sent_per_topic)
    assert grown[f"valid:{settings.topic_clicks}"] == len(payloads)  # every valid event between the poison

    # Dead letters reach Kafka when the worker's producer flushes, after the counters are written.
    deadline = time.monotonic() + 30
    while len(dead := dead_letters_keyed(settings, key)) < len(payloads) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert Counter(record.value for record in dead) == Counter(payload for _, payload in payloads)
    for record in dead:
        headers = read_headers(record.headers)
        assert headers[REASON] and headers[SOURCE_TOPIC] in topics.values()


def _corpus(settings, run: str) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(topic, key, value, expected reason) for every message a probe of a running worker used to
    stop it with."""
    user = f"corpus-{run}"
    click = {"event_id": f"c-{run}", "user_id": user, "item_id": "85123A", "type": "view", "ts": time.time()}

    def raw(**extra) -> bytes:
        return json.dumps({**click, **extra}).encode()

    key = user.encode()
    return [
        (settings.topic_clicks, key, raw(pad="x" * (1 << 20)), "exceeds MAX_EVENT_BYTES"),
        (settings.topic_clicks, key, raw(pad="x" * (5 << 20)), "exceeds MAX_EVENT_BYTES"),
        (settings.topic_clicks, key, raw()[:-1] + b', "deep": ' + b"[" * 1000 + b"]" * 1000 + b"}", "undecodable"),
        (settings.topic_clicks, b"someone-else", raw(), "Kafka key must be the event's user_id"),
        (settings.topic_clicks, key, raw(user_id=user + "\u202e"), "user_id must be"),
        (settings.topic_clicks, key, raw()[:-1] + b', "user_id": "' + key + b'"}', "duplicate key 'user_id'"),
        (settings.topic_clicks, key, None, "tombstone"),
        (settings.topic_purchases, None, b"{}", "schema"),
        (settings.topic_products, b"85123A", None, "tombstone"),
        (settings.topic_online_metrics, None, b"{}", "needs its scope"),
        (settings.topic_online_metrics, b"scope", b"[" * 1000 + b"]" * 1000, "not an online summary"),
    ]


@pytest.mark.integration
def test_a_corpus_of_worker_stoppers_is_dead_lettered_once_each_and_the_worker_goes_on(poison_worker,
                                                                                     redis_client_module):
    settings, worker = poison_worker
    pid, run = worker.pid, uuid.uuid4().hex[:8]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=8 << 20)
    sent, valid_users = {}, []
    for n, (topic, key, value, reason) in enumerate(_corpus(settings, run)):
        record = producer.send(topic, key=key, value=value).get(timeout=30)
        sent[(topic, record.partition, record.offset)] = reason
        valid = ClickEvent(f"{run}-{n}", f"fine-{run}-{n}", "85123A", "view", time.time())
        producer.send(settings.topic_clicks, key=valid.user_id.encode(), value=encode_event(valid))
        valid_users.append(valid.user_id)
    # Internal topics: a tombstone and a version that cannot be served on model-updates.
    from streams.model_artifacts import ArtifactStore
    ArtifactStore(settings.artifact_dir).write(f"broken-{run}", {"popular.json": b"{}"}, {})
    producer.send(settings.topic_model_updates, key=b"model", value=None)
    producer.send(settings.topic_model_updates, key=b"model", value=json.dumps({"model_version": f"broken-{run}"}).encode())
    after = ClickEvent(f"{run}-after", f"fine-{run}-after", "85123A", "view", time.time())
    producer.send(settings.topic_clicks, key=after.user_id.encode(), value=encode_event(after))
    valid_users.append(after.user_id)
    producer.flush()
    producer.close()

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker stopped"
        if all(redis_client_module.exists(f"recs:{user}") for user in valid_users):
            break
        time.sleep(0.3)
    assert [user for user in valid_users if not redis_client_module.exists(f"recs:{user}")] == []

    consumer = KafkaConsumer(settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None,
                             max_partition_fetch_bytes=8 << 20, fetch_max_bytes=16 << 20)
    found = Counter()
    deadline = time.monotonic() + 30
    while set(found) != set(sent) and time.monotonic() < deadline:
        for record in consumer:
            headers = read_headers(record.headers)
            source = (headers[SOURCE_TOPIC], int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
            if source in sent:
                found[source] += 1
                assert re.search(sent[source], headers[REASON]), (sent[source], headers[REASON])
                assert record.value is None or len(record.value) <= settings.max_dead_letter_bytes
                if headers.get("dlq.truncated"):
                    assert int(headers["dlq.original.bytes"]) > settings.max_dead_letter_bytes
    consumer.close()
    assert found == Counter(dict.fromkeys(sent, 1)), "every bad message dead-lettered exactly once"
    assert worker.poll() is None and worker.pid == pid
