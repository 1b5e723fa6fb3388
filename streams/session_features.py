"""Where a user's session features are updated, one event at a time.

The state lives in a changelog-backed Faust table (see ``streams.topology``);
this module is the pure logic, so it can be tested without a broker.
"""

from __future__ import annotations

import msgspec

from models.online_segments import CustomerStream
from streams.events import ClickEvent, PurchaseEvent, UserEvent

# Enough to absorb redelivery after a crash, small enough to keep the state compact.
DEDUPE_WINDOW = 128
EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "dismiss", "purchase")


class ServedList(msgspec.Struct):
    """A list this worker wrote for the user, kept to attribute later actions to it."""

    rec_id: str
    model_version: str
    items: list[str]
    at: float  # event time the list answered
    clicked: bool = False  # a view of one of its items was credited to it
    arm: str = ""  # the experiment arm that wrote it (streams.experiments), "" outside experiments
    experiment: str = ""  # that arm's experiment: a later experiment's outcomes never count this list


# Enough to trace a purchase back through a visit of several cart additions.
SERVED_LISTS_KEPT = 8
BOUGHT_ITEMS_KEPT = 50
DISMISSALS_KEPT = 200
DEFAULT_DISMISS_SECONDS = 30 * 86400.0


class SessionFeatures(msgspec.Struct):
    user_id: str
    session_id: str = ""
    session_started: float = 0.0
    last_seen: float = 0.0
    session_events: int = 0
    platform_session_id: str | None = None
    # Most recent last, without repeats.
    recent_items: list[str] = msgspec.field(default_factory=list)
    cart: list[str] = msgspec.field(default_factory=list)
    session_items: list[str] = msgspec.field(default_factory=list)
    first_item: str = ""  # the first item of the current visit
    purchased_this_session: list[str] = msgspec.field(default_factory=list)
    # Items bought across sessions, oldest first (the latest BOUGHT_ITEMS_KEPT): buy-again
    # candidates, and never shown in the discover list.
    bought_items: list[str] = msgspec.field(default_factory=list)
    # Of those, item -> (orders, last order's time): the evidence of a "bought before" reason.
    bought_times: dict[str, tuple[int, float]] = msgspec.field(default_factory=dict)
    # Lifetime counts per event type, and items bought in all.
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    units_purchased: int = 0
    recent_event_ids: list[str] = msgspec.field(default_factory=list)
    # "topic:partition" -> (last offset, newest Kafka time) applied: a redelivery is known however
    # late it comes (streams.log_positions).
    positions: dict[str, tuple[int, float]] = msgspec.field(default_factory=dict)
    served: list[ServedList] = msgspec.field(default_factory=list)
    # Items the customer dismissed -> when (event time); dropped once DISMISS_DAYS have passed.
    dismissed: dict[str, float] = msgspec.field(default_factory=dict)
    segment: str = ""
    customer: CustomerStream = msgspec.field(default_factory=CustomerStream)

    def remember_served(self, served: ServedList) -> None:
        self.served.append(served)
        del self.served[:-SERVED_LISTS_KEPT]

    def context_before_session(self) -> list[str]:
        """Recent items from earlier sessions: what was known when this visit began."""
        current = set(self.session_items)
        return [item for item in self.recent_items if item not in current]

    def recommendation_exclusions(self) -> set[str]:
        """Items the list must not show now: already in the cart, bought this session, or dismissed.

        Items bought in earlier sessions stay eligible, since repeat purchases
        are a large share of what shops sell.
        """
        return set(self.cart).union(self.purchased_this_session, self.dismissed)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(SessionFeatures).decode


def dump_features(features: SessionFeatures) -> bytes:
    return _encode(features)


def load_features(raw: bytes) -> SessionFeatures:
    return _decode(raw)


def order_value(event: PurchaseEvent) -> float:
    return sum(line.quantity * line.unit_price for line in event.lines)


def touched_items(event: UserEvent) -> list[str]:
    if isinstance(event, ClickEvent):
        return [event.item_id]
    return [line.item_id for line in event.lines]


def update_session_features(
    features: SessionFeatures | None, event: UserEvent, gap_seconds: float, max_recent: int,
    dismiss_seconds: float = DEFAULT_DISMISS_SECONDS,
) -> tuple[SessionFeatures, bool]:
    """Apply ``event`` to ``features`` (``None`` for a first-seen user).

    Returns the features and whether the event was new; a redelivered event
    (same ``event_id``) leaves the features untouched.
    """
    if features is None:
        features = SessionFeatures(user_id=event.user_id)
    elif event.event_id in features.recent_event_ids:
        return features, False

    items = touched_items(event)
    if _starts_new_session(features, event, gap_seconds):
        _start_session(features, event, items[0])
    features.platform_session_id = event.session_id or features.platform_session_id
    features.last_seen = max(features.last_seen, event.ts)
    features.session_events += 1
    kind = event.type if isinstance(event, ClickEvent) else "purchase"
    features.counts[kind] = features.counts.get(kind, 0) + 1
    if isinstance(event, PurchaseEvent):
        _apply_purchase(features, event, items)
    else:
        _apply_cart_change(features, event, items)
    if kind == "dismiss":  # a "not for me" says nothing about what the customer is looking for
        features.dismissed[event.item_id] = event.ts
    else:
        _append_unique(features.recent_items, items, limit=max_recent)
        _append_unique(features.session_items, items, limit=max_recent)
    if features.dismissed:
        _forget_old_dismissals(features, dismiss_seconds)
    features.recent_event_ids.append(event.event_id)
    del features.recent_event_ids[:-DEDUPE_WINDOW]
    return features, True


def _start_session(features: SessionFeatures, event: UserEvent, first_item: str) -> None:
    features.session_id = f"{event.user_id}:{int(event.ts)}"
    features.session_started = event.ts
    features.session_events = 0
    features.cart = []
    features.session_items = []
    features.purchased_this_session = []
    features.first_item = first_item


def _apply_purchase(features: SessionFeatures, event: PurchaseEvent, items: list[str]) -> None:
    units = sum(line.quantity for line in event.lines)
    features.units_purchased += units
    features.customer.add_order(event.ts, len(event.lines), units, order_value(event))
    bought = set(items)
    features.cart = [item for item in features.cart if item not in bought]
    _append_unique(features.purchased_this_session, items, limit=None)
    _append_unique(features.bought_items, items, limit=BOUGHT_ITEMS_KEPT)
    _count_orders(features, bought, event.ts)


def _apply_cart_change(features: SessionFeatures, event: ClickEvent, items: list[str]) -> None:
    if event.type == "add_to_cart":
        _append_unique(features.cart, items, limit=None)
    elif event.type == "remove_from_cart":
        features.cart = [item for item in features.cart if item != event.item_id]


def _count_orders(features: SessionFeatures, items: set[str], ts: float) -> None:
    times = features.bought_times
    for item in items:
        orders, last = times.get(item, (0, 0.0))
        times[item] = (orders + 1, max(last, ts))
    if len(times) > len(features.bought_items):
        kept = set(features.bought_items)
        features.bought_times = {item: value for item, value in times.items() if item in kept}


def _forget_old_dismissals(features: SessionFeatures, dismiss_seconds: float) -> None:
    since = features.last_seen - dismiss_seconds
    kept = sorted(((ts, item) for item, ts in features.dismissed.items() if ts > since), reverse=True)
    features.dismissed = {item: ts for ts, item in kept[:DISMISSALS_KEPT]}


def _starts_new_session(features: SessionFeatures, event: UserEvent, gap_seconds: float) -> bool:
    if not features.session_id:
        return True
    if event.session_id and features.platform_session_id and event.session_id != features.platform_session_id:
        return True
    return event.ts - features.last_seen > gap_seconds


def _append_unique(items: list[str], new: list[str], limit: int | None) -> None:
    for item in new:
        if item in items:
            items.remove(item)
        items.append(item)
    if limit is not None:
        del items[:-limit]
