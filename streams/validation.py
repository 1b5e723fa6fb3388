"""Where an incoming event is validated: bytes in, a typed event or a reason out.

Structure and types are checked by msgspec while decoding; the product's own
rules (bounds, known event types, clock skew) are checked afterwards. Nothing
here raises anything but :class:`InvalidEvent`, whatever the input bytes.
"""

from __future__ import annotations

import math
import re
import time

import msgspec

from streams.events import CLICK_TYPES, ClickEvent, ProductRecord, PurchaseEvent, UserEvent
from streams.settings import Settings

EARLIEST_TS = 946684800.0  # 2000-01-01: anything older is a broken clock, not history
# The API and the worker's pages check path ids against the same rule.
ID_RULE = "1-128 printable characters without spaces"
ID_PATTERN = r"[^\s\x00-\x1f\x7f]{1,128}"
_ID = re.compile(ID_PATTERN)
MAX_TITLE_CHARS = 1000


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

    def validate(self, topic: str, raw: bytes | None, now: float | None = None) -> UserEvent | ProductRecord:
        """Decode ``raw`` from ``topic`` and apply the contract's rules."""
        if topic not in self._decoders:
            raise InvalidEvent(f"no contract for topic {topic!r}")
        if raw is None or len(raw) == 0:
            raise InvalidEvent("empty payload")
        if len(raw) > self.limits.max_event_bytes:
            raise InvalidEvent(f"payload of {len(raw)} bytes exceeds MAX_EVENT_BYTES={self.limits.max_event_bytes}")
        try:
            event = self._decoders[topic].decode(raw)
        except msgspec.ValidationError as exc:
            raise InvalidEvent(f"schema: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidEvent(f"malformed JSON: {exc}") from None
        self._checks[topic](event, time.time() if now is None else now)
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


def valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def _check_id(name: str, value: str) -> None:
    if not valid_id(value):
        raise InvalidEvent(f"{name} must be {ID_RULE}")


def _check_optional_id(name: str, value: str | None) -> None:
    if value is not None:
        _check_id(name, value)
