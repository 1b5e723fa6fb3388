import time

import json
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from streams.events import ClickEvent, OrderLine, ProductRecord, PurchaseEvent, encode_event
from streams.settings import Settings
from streams.validation import EventValidator, InvalidEvent

SETTINGS = Settings()
NOW = 1_700_000_000.0
validator = EventValidator(SETTINGS)


def click(**overrides) -> bytes:
    event = {"event_id": "e1", "user_id": "u1", "item_id": "85123A", "type": "view", "ts": NOW - 10}
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def purchase(**overrides) -> bytes:
    event = {"event_id": "p1", "user_id": "u1", "order_id": "o1", "ts": NOW - 10,
             "lines": [{"item_id": "85123A", "quantity": 2, "unit_price": 2.55}]}
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def reason(topic: str, raw) -> str:
    with pytest.raises(InvalidEvent) as excinfo:
        validator.validate(topic, raw, now=NOW)
    return str(excinfo.value)


def test_valid_click_round_trips_with_optional_fields():
    event = validator.validate("clicks", click(session_id="s9", rec_id="r1"), now=NOW)
    assert event == ClickEvent("e1", "u1", "85123A", "view", NOW - 10, session_id="s9", rec_id="r1")


def test_valid_purchase_and_product():
    event = validator.validate("purchases", purchase(country="France"), now=NOW)
    assert event.lines == [OrderLine("85123A", 2, 2.55)] and event.country == "France"
    product = validator.validate("products", b'{"item_id": "85123A", "title": "HEART", "price": 2.5}', now=NOW)
    assert product == ProductRecord("85123A", "HEART", price=2.5)


def test_encode_event_round_trips_through_validation():
    event = PurchaseEvent("p2", "u2", "o2", [OrderLine("A1", 1, 1.0)], NOW - 1)
    assert validator.validate("purchases", encode_event(event), now=NOW) == event


@pytest.mark.parametrize("raw, expected", [
    (b"{not json", "malformed JSON"),
    (b"", "empty payload"),
    (b"[1, 2]", "schema"),
    (click(user_id=...), "missing required field `user_id`"),
    (click(user_id=17850), "Expected `str`, got `int` - at `$.user_id`"),
    (click(ts="yesterday"), "at `$.ts`"),
    (click(type="wishlist"), "unknown click type 'wishlist'"),
    (click(item_id=""), "item_id must be 1-128 printable characters"),
    (click(user_id="a b"), "user_id must be 1-128 printable characters"),
    (click(ts=NOW + 3600), "3600 s in the future"),
    (click(ts=12.0), "before 2000-01-01"),
    (b"\xff\xfe\x00garbage", "malformed JSON"),
])
def test_bad_clicks_are_refused_with_a_reason(raw, expected):
    assert expected in reason("clicks", raw)


@pytest.mark.parametrize("overrides, expected", [
    ({"lines": []}, "order has no lines"),
    ({"lines": [{"item_id": "A", "quantity": -3, "unit_price": 1.0}]}, "quantity -3 outside"),
    ({"lines": [{"item_id": "A", "quantity": 0, "unit_price": 1.0}]}, "quantity 0 outside"),
    ({"lines": [{"item_id": "A", "quantity": 10**9, "unit_price": 1.0}]}, "quantity 1000000000 outside"),
    ({"lines": [{"item_id": "A", "quantity": 1, "unit_price": 0}]}, "unit_price 0.0 outside"),
    ({"lines": [{"item_id": "A", "quantity": 1, "unit_price": 1e12}]}, "unit_price 1000000000000.0 outside"),
    ({"lines": [{"item_id": "A", "quantity": 1.5, "unit_price": 1.0}]}, "Expected `int`, got `float`"),
    ({"lines": [{"item_id": "A", "quantity": 1, "unit_price": 1.0}] * 1001}, "more than MAX_ORDER_LINES"),
    ({"order_id": ...}, "missing required field `order_id`"),
])
def test_bad_purchases_are_refused_with_a_reason(overrides, expected):
    assert expected in reason("purchases", purchase(**overrides))


def test_oversized_payload_is_refused_before_decoding():
    raw = click(item_id="A" * 100) + b" " * SETTINGS.max_event_bytes
    assert "exceeds MAX_EVENT_BYTES" in reason("clicks", raw)


def test_unknown_topic_and_bad_product():
    assert "no contract for topic" in reason("orders", click())
    assert "title must have" in reason("products", b'{"item_id": "A", "title": "  "}')
    assert "price -1.0 outside" in reason("products", b'{"item_id": "A", "title": "x", "price": -1}')


def test_limits_come_from_settings():
    strict = EventValidator(Settings(max_quantity=5))
    with pytest.raises(InvalidEvent, match="outside 1..5"):
        strict.validate("purchases", purchase(lines=[{"item_id": "A", "quantity": 6, "unit_price": 1.0}]), now=NOW)


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["clicks", "purchases", "products"]))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw, topic):
    try:
        validator.validate(topic, raw, now=time.time())
    except InvalidEvent as exc:
        assert str(exc)


@pytest.mark.parametrize("raw, expected", [
    (b'{"pad": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "undecodable|malformed|exceeds"),
    (click()[:-1] + b', "deep": ' + b"[" * 1000 + b"]" * 1000 + b"}", "undecodable|malformed"),
    (click(user_id="u\u202e1"), "user_id must be"),
    (click(item_id="a\u200bb"), "item_id must be"),
    (b'{"event_id": "e1", "user_id": "u1", "user_id": "u2", "item_id": "A", "type": "view", "ts": 1699999990}',
     "duplicate key 'user_id'"),
    (b'{"event_id":"e1","user_id":"u1","item_id":"A","type":"view","ts":1699999990,"type" : "view"}',
     "duplicate key 'type'"),
    (None, "tombstone"),
])
def test_nesting_invisible_characters_duplicate_keys_and_tombstones_are_refused(raw, expected):
    with pytest.raises(InvalidEvent, match=expected):
        EventValidator(Settings(max_event_bytes=1 << 20)).validate("clicks", raw, now=NOW)


def test_the_kafka_key_must_be_the_events_own():
    assert validator.validate("clicks", click(), now=NOW, key=b"u1").user_id == "u1"
    assert validator.validate("products", json.dumps({"item_id": "A", "title": "t"}).encode(), key=b"A").item_id == "A"
    for key, shown in ((b"u2", "key b'u2'"), (None, "no key")):
        with pytest.raises(InvalidEvent, match=f"must be the event's user_id; got {shown}"):
            validator.validate("clicks", click(), now=NOW, key=key)
    with pytest.raises(InvalidEvent, match="must be the event's item_id"):
        validator.validate("products", json.dumps({"item_id": "A", "title": "t"}).encode(), key=b"u1")


def test_optional_fields_sent_as_null_and_unknown_fields_are_not_duplicates():
    raw = b'{"event_id":"e1","user_id":"u1","item_id":"A","type":"view","ts":1699999990,"session_id":null,"x":{"y":1}}'
    assert validator.validate("clicks", raw, now=NOW).session_id is None
