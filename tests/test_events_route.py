"""POST /events and the Python client against a real broker and Redis: the key, the contract's
validator, the keys events land under, and a paced load with nothing lost."""

import json
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from streams.api.app import create_api
from streams.api.event_intake import MAX_EVENTS_BODY_BYTES, MAX_EVENTS_PER_REQUEST
from streams.client import RecsysClient, RecsysError
from streams.local_stack import free_port
from streams.topic_admin import ensure_topics

pytestmark = pytest.mark.integration

KEY = "k3y-for-tests-only-0123456789"
NOW = time.time()


def click(n, user="u1", kind="view"):
    return {"event_id": f"c{n}", "user_id": user, "item_id": f"I{n % 50}", "type": kind, "ts": NOW}


PURCHASE = {"event_id": "p1", "user_id": "u2", "order_id": "o1", "ts": NOW,
            "lines": [{"item_id": "I1", "quantity": 2, "unit_price": 3.5}]}
PRODUCT = {"item_id": "I1", "title": "WHITE HANGING HEART T-LIGHT HOLDER", "price": 2.55}


@pytest.fixture
def settings(stack_settings):
    configured = stack_settings.replace(api_key=KEY)
    ensure_topics(configured)
    return configured


@pytest.fixture
def api(settings):
    with TestClient(create_api(settings)) as client:
        yield client


def read_topic(settings, topic, expected, quiet_ms=1500):
    """Every record of ``topic``: reads past ``expected`` for ``quiet_ms`` to see any extra."""
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest")
    records, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=250).values():
            records += batch
        if len(records) >= expected:
            deadline = min(deadline, time.monotonic() + quiet_ms / 1000)
    consumer.close()
    return records


def post(api, body, key=KEY, header="Authorization"):
    value = f"Bearer {key}" if header == "Authorization" else key
    return api.post("/events", content=body if isinstance(body, bytes) else json.dumps(body),
                    headers={header: value} if key is not None else {})


def test_the_route_is_off_without_a_configured_key(stack_settings):
    with TestClient(create_api(stack_settings)) as client:
        response = client.post("/events", content=json.dumps([click(1)]), headers={"Authorization": "Bearer x"})
    assert response.status_code == 404 and "API_KEY" in response.json()["error"]


@pytest.mark.parametrize("key, header", [(None, "Authorization"), ("wrong", "Authorization"),
                                         (KEY[:-1], "X-API-Key"), ("", "X-API-Key")])
def test_a_missing_or_wrong_key_is_a_401_that_never_echoes_the_key(api, key, header):
    response = post(api, [click(1)], key=key, header=header)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert KEY not in response.text and (not key or key not in response.text)


def test_valid_events_reach_their_topics_under_the_contracts_keys_and_the_rest_are_refused_by_index(api, settings):
    body = [click(1), {**click(2), "type": "like"}, PURCHASE, "not an object", PRODUCT,
            {**click(3), "ts": NOW + 86400}]
    response = post(api, body, header="X-API-Key")
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 3 and answer["refused"] == 3
    assert [r["index"] for r in answer["refusals"]] == [1, 3, 5]
    assert "unknown click type" in answer["refusals"][0]["reason"]
    assert "in the future" in answer["refusals"][2]["reason"]
    clicks = read_topic(settings, settings.topic_clicks, 1)
    purchases = read_topic(settings, settings.topic_purchases, 1)
    products = read_topic(settings, settings.topic_products, 1)
    assert [(r.key, json.loads(r.value)) for r in clicks] == [(b"u1", click(1))]
    assert [(r.key, json.loads(r.value)) for r in purchases] == [(b"u2", PURCHASE)]
    assert [(r.key, json.loads(r.value)) for r in products] == [(b"I1", PRODUCT)]
    metrics = api.get("/metrics").text
    assert 'recsys_api_events_total{outcome="accepted"} 3.0' in metrics
    assert 'recsys_api_events_total{outcome="refused"} 3.0' in metrics


def test_a_duplicate_key_in_one_event_is_refused_as_the_worker_would(api):
    raw = b'[{"event_id": "d", "user_id": "u", "item_id": "A", "type": "view", "ts": %d, "user_id": "v"}]' % NOW
    answer = post(api, raw).json()
    assert answer["accepted"] == 0 and "duplicate key" in answer["refusals"][0]["reason"]


@pytest.mark.parametrize("body, status, words", [
    (b'{"event_id": "x"}', 422, "JSON array"),
    (b"[{", 422, "JSON array"),
    (json.dumps([click(n) for n in range(MAX_EVENTS_PER_REQUEST + 1)]).encode(), 422, "at most"),
    (b"[" + b" " * MAX_EVENTS_BODY_BYTES + b"]", 413, "limited"),
])
def test_a_body_that_is_not_a_bounded_array_is_refused_whole(api, settings, body, status, words):
    response = post(api, body)
    assert response.status_code == status and words in response.json()["error"]


def test_an_unreachable_kafka_is_a_503_and_the_client_raises_after_its_retries(stack_settings):
    down = stack_settings.replace(api_key=KEY, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    with serving(down) as url, RecsysClient(url, api_key=KEY, retries=1, backoff_seconds=0.01) as shop:
        with pytest.raises(RecsysError) as raised:
            shop.send_events([click(1)])
    assert raised.value.status == 503


class serving:
    """The API under uvicorn on a free loopback port, in a thread of the test."""

    def __init__(self, settings):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(create_api(settings), host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)


def test_the_client_paced_at_2000_events_a_second_loses_nothing(settings):
    """Three seconds at 2,000 events/s, 200 per request; the bench (bench/events_route.py) measures
    the rate the route holds."""
    rate, seconds, per_request = 2000, 3, 200
    sent = []
    with serving(settings) as url, RecsysClient(url, api_key=KEY) as shop:
        started = time.monotonic()
        accepted = 0
        for n in range(rate * seconds // per_request):
            batch = [click(n * per_request + i, user=f"u{i % 97}") for i in range(per_request)]
            accepted += shop.send_events(batch)["accepted"]
            sent += batch
            pause = started + (n + 1) * per_request / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        with pytest.raises(RecsysError) as raised:
            shop.recommendations("nobody-yet")
        assert raised.value.status == 404
    assert accepted == len(sent) == rate * seconds
    in_kafka = read_topic(settings, settings.topic_clicks, accepted)
    assert len(in_kafka) == accepted
    assert sorted(json.loads(r.value)["event_id"] for r in in_kafka) == sorted(e["event_id"] for e in sent)
