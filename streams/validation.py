"""Where an incoming event is validated: bytes in, a typed event or a reason out.

Structure and types are checked by msgspec while decoding; the product's own
rules (bounds, known event types, clock skew, duplicate keys, the Kafka key)
are checked afterwards. Nothing here raises anything but :class:`InvalidEvent`,
whatever the input bytes.
"""

from __future__ import annotations

import json
import math
import re
import time

import msgspec

from streams.events import CLICK_TYPES, ClickEvent, ProductRecord, PurchaseEvent, UserEvent, event_key
from streams.settings import Settings

EARLIEST_TS = 946684800.0  # 2000-01-01: anything older is a broken clock, not history
# The API and the worker's pages check path ids against the same rule.
ID_RULE = "1-128 printable characters without spaces"
ID_PATTERN = r"[^\s\x00-\x1f\x7f]{1,128}"
_ID = re.compile(ID_PATTERN)
MAX_TITLE_CHARS = 1000
# A JSON object key: a closing quote, optional blanks, then a colon.
_OBJECT_KEY = re.compile(rb'"\s*:')


class InvalidEvent(ValueError):
    """The event breaks the contract; ``str(exc)`` is the dead-letter reason."""


class EventValidator:
    def __init__(self, settings: Settings):
        self.limits = settings
        self._decoders = {
            settings.topic_clicks: msgspec.json.Decoder(ClickEvent),
            settings.topic_purchases: msgspec.json.Decoder(PurchaseEvent),
            settings.topic_products: msgspec.json.Decoder(ProductRecord),
        }
        self._checks = {
            settings.topic_clicks: self._check_click,
            settings.topic_purchases: self._check_purchase,
            settings.topic_products: self._check_product,
        }

    def validate(self, topic: str, raw: bytes | None, now: float | None = None,
                 key: bytes | None | object = ...) -> UserEvent | ProductRecord:
        """Decode ``raw`` from ``topic`` and apply the contract's rules; with ``key``, the Kafka
        key must be the event's own (``user_id``, or ``item_id`` for products)."""
        if topic not in self._decoders:
            raise InvalidEvent(f"no contract for topic {str(topic)[:100]!r}")
        if raw is None:
            raise InvalidEvent("tombstone: the message has no value")
        if len(raw) == 0:
            raise InvalidEvent("empty payload")
        if len(raw) > self.limits.max_event_bytes:
            raise InvalidEvent(f"payload of {len(raw)} bytes exceeds MAX_EVENT_BYTES={self.limits.max_event_bytes}")
        event = _decode(self._decoders[topic], raw)
        self._checks[topic](event, time.time() if now is None else now)
        if key is not ...:
            _check_key(key, event)
        return event

    def _check_click(self, event: ClickEvent, now: float) -> None:
        _check_id("event_id", event.event_id)
        _check_id("user_id", event.user_id)
        _check_id("item_id", event.item_id)
        if event.type not in CLICK_TYPES:
            raise InvalidEvent(f"unknown click type {event.type[:40]!r}; expected one of {', '.join(CLICK_TYPES)}")
        self._check_ts(event.ts, now)
        _check_optional_id("session_id", event.session_id)
        _check_optional_id("rec_id", event.rec_id)

    def _check_purchase(self, event: PurchaseEvent, now: float) -> None:
        _check_id("event_id", event.event_id)
        _check_id("user_id", event.user_id)
        _check_id("order_id", event.order_id)
        self._check_ts(event.ts, now)
        _check_optional_id("session_id", event.session_id)
        _check_optional_id("rec_id", event.rec_id)
        if not event.lines:
            raise InvalidEvent("order has no lines")
        if len(event.lines) > self.limits.max_order_lines:
            raise InvalidEvent(f"order has {len(event.lines)} lines, more than MAX_ORDER_LINES={self.limits.max_order_lines}")
        for n, line in enumerate(event.lines):
            _check_id(f"lines[{n}].item_id", line.item_id)
            if not 1 <= line.quantity <= self.limits.max_quantity:
                raise InvalidEvent(f"lines[{n}].quantity {line.quantity} outside 1..{self.limits.max_quantity}")
            if not (math.isfinite(line.unit_price) and 0 < line.unit_price <= self.limits.max_unit_price):
                raise InvalidEvent(f"lines[{n}].unit_price {line.unit_price} outside (0, {self.limits.max_unit_price}]")

    def _check_product(self, record: ProductRecord, now: float) -> None:
        _check_id("item_id", record.item_id)
        if not record.title.strip() or len(record.title) > MAX_TITLE_CHARS:
            raise InvalidEvent(f"title must have 1..{MAX_TITLE_CHARS} characters")
        if record.price is not None and not (math.isfinite(record.price) and 0 <= record.price <= self.limits.max_unit_price):
            raise InvalidEvent(f"price {record.price} outside [0, {self.limits.max_unit_price}]")
        if record.ts is not None:
            self._check_ts(record.ts, now)

    def _check_ts(self, ts: float, now: float) -> None:
        if not math.isfinite(ts) or ts < EARLIEST_TS:
            raise InvalidEvent(f"timestamp {ts} is before 2000-01-01 or not a number")
        if ts > now + self.limits.max_future_skew_seconds:
            raise InvalidEvent(f"timestamp {ts:.0f} is {ts - now:.0f} s in the future")


def _decode(decoder: msgspec.json.Decoder, raw: bytes):
    try:
        event = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"schema: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed JSON: {exc}") from None
    except (RecursionError, MemoryError, ValueError, TypeError) as exc:  # e.g. nesting deeper than the decoder goes
        raise InvalidEvent(f"undecodable payload: {type(exc).__name__}") from None
    _check_unique_keys(raw, event)
    return event


def _check_unique_keys(raw: bytes, event: msgspec.Struct) -> None:
    """Refuse an object that names a field twice: decoders keep the last value silently.
    Exact parsing runs only when the payload holds more keys than the event has fields set."""
    fields = sum(value is not None for value in msgspec.structs.astuple(event))
    fields += 3 * len(getattr(event, "lines", ()))
    if len(_OBJECT_KEY.findall(raw)) <= fields:
        return
    try:
        json.loads(raw, object_pairs_hook=_unique_pairs)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent(str(exc)[:200]) from None


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict:
    seen = set()
    for name, _ in pairs:
        if name in seen:
            raise ValueError(f"duplicate key {name[:40]!r}")
        seen.add(name)
    return dict(pairs)


def _check_key(key: bytes | None, event) -> None:
    if key != event_key(event):
        field = "item_id" if isinstance(event, ProductRecord) else "user_id"
        shown = "no key" if key is None else f"key {key[:40]!r}"
        raise InvalidEvent(f"Kafka key must be the event's {field}; got {shown}")


def valid_id(value: str) -> bool:
    """Printable (no controls, no invisible format characters such as U+202E), no blanks, 1-128 long."""
    return _ID.fullmatch(value) is not None and value.isprintable()


def _check_id(name: str, value: str) -> None:
    if not valid_id(value):
        raise InvalidEvent(f"{name} must be {ID_RULE}")


def _check_optional_id(name: str, value: str | None) -> None:
    if value is not None:
        _check_id(name, value)
