"""The wire contract: JSON events the platform publishes to Kafka.

Every event is keyed by ``user_id`` (products by ``item_id``) so that one
user's events stay on one partition and the worker never repartitions.
Timestamps are Unix epoch seconds (float).
"""

from __future__ import annotations

from typing import Literal

import msgspec

# ``dismiss``: the customer does not want the item; it is not shown to them for DISMISS_DAYS.
ClickType = Literal["view", "add_to_cart", "remove_from_cart", "dismiss"]
CLICK_TYPES: tuple[str, ...] = ("view", "add_to_cart", "remove_from_cart", "dismiss")


class ClickEvent(msgspec.Struct, frozen=True):
    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    session_id: str | None = None
    rec_id: str | None = None


class OrderLine(msgspec.Struct, frozen=True):
    item_id: str
    quantity: int
    unit_price: float


class PurchaseEvent(msgspec.Struct, frozen=True):
    event_id: str
    user_id: str
    order_id: str
    lines: list[OrderLine]
    ts: float
    country: str | None = None
    session_id: str | None = None
    rec_id: str | None = None


class ProductRecord(msgspec.Struct, frozen=True):
    item_id: str
    title: str
    category: str | None = None
    price: float | None = None
    ts: float | None = None


class FeedbackEvent(msgspec.Struct, frozen=True):
    """An action on a recommended item, attributed to the list the user was served (topic rec-feedback)."""

    event_id: str  # the source event's id, plus the item for purchase lines
    user_id: str
    item_id: str
    action: str  # view, add_to_cart, dismiss or purchase
    rank: int  # 1-based position in the list
    rec_id: str
    model_version: str
    segment: str
    attribution: str  # explicit (the event named rec_id) or implicit (last list in the window showing the item)
    latency_seconds: float  # from the list being written to the action, in event time
    ts: float
    arm: str = ""  # the experiment arm of the list, "" outside experiments


class RetrainRequest(msgspec.Struct, frozen=True):
    """The serving model's purchase hit-rate dropped significantly (topic retrain-requested)."""

    model_version: str
    baseline_hit_rate: float
    current_hit_rate: float
    purchases_seen: int
    ts: float


class DriftAlert(msgspec.Struct, frozen=True):
    """The purchase statistics changed significantly (topic drift-alerts)."""

    statistic: str
    before: float
    now: float
    ts: float


UserEvent = ClickEvent | PurchaseEvent

_encoder = msgspec.json.Encoder()


def encode_event(event: msgspec.Struct) -> bytes:
    """Serialise an event for Kafka, leaving out fields that are unset."""
    return _encoder.encode({k: v for k, v in msgspec.structs.asdict(event).items() if v is not None})


def event_key(event: msgspec.Struct) -> bytes:
    """The Kafka key that keeps one user's (or one product's) events together."""
    key = event.item_id if isinstance(event, ProductRecord) else event.user_id
    return key.encode()
