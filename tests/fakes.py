"""In-memory stand-ins for the worker's Kafka and Redis sides, for pure-logic unit tests only."""

import itertools
import json
from dataclasses import dataclass

_offsets = itertools.count()
DERIVED = b"<derived>"


@dataclass
class Msg:
    """A consumed message. By default keyed as the contract says (the event's user_id, or item_id
    for products) and at the next offset, as a producer following the contract would leave it."""

    topic: str
    value: bytes
    key: bytes | None = DERIVED
    partition: int = 0
    offset: int = -1
    timestamp: float = 0.0

    def __post_init__(self):
        if self.offset < 0:
            self.offset = next(_offsets)
        if self.key == DERIVED:
            self.key = _contract_key(self.value)


def _contract_key(value: bytes | None) -> bytes | None:
    try:
        event = json.loads(value)
        return str(event.get("user_id", event.get("item_id"))).encode()
    except (TypeError, ValueError, AttributeError):
        return None


class RecordingWriter:
    def __init__(self):
        self.lists, self.products, self.counters, self.popular, self.segments = {}, {}, {}, None, {}
        self.slot_lists = {}  # Redis key -> list
        self.positions = {}  # topic:partition -> Position counted up to
        self.attempts = {}  # topic:partition -> the crash-loop breaker's Attempt
        self.catalog = {}  # item_id -> ProductRecord, as Redis would hold it
        self.segment_sizes = {}
        self.dismissals = {}  # user_id -> {item: until}
        self.experiment_outcomes = {}  # (experiment, outcome) -> {user_id: amount}

    async def write(self, lists=(), slot_lists=(), popular=None, products=(), counters=None, segments=None,
                    prequential=None, segment_moves=None, dismissals=None, sessions=None, experiment_outcomes=None, fence="0",
                    positions=None, counted_before=None):
        if positions is not None:
            self.positions.update(positions[1])
        self.lists.update({rec.user_id: rec for rec in lists})
        self.slot_lists.update(dict(slot_lists))
        for segment, change in (segment_moves or {}).items():
            self.segment_sizes[segment] = self.segment_sizes.get(segment, 0) + change
        self.segments.update(segments or {})
        for key, amounts in (experiment_outcomes or {}).items():
            for user_id, amount in amounts.items():
                self.experiment_outcomes.setdefault(key, {}).setdefault(user_id, 0)
                self.experiment_outcomes[key][user_id] += amount
        for user_id, until in (dismissals or {}).items():
            self.dismissals.setdefault(user_id, {}).update(until)
        self.products.update(products)
        for key, amount in (counters or {}).items():
            self.counters[key] = self.counters.get(key, 0) + amount
        self.popular = popular or self.popular
        return True

    async def read_products(self, item_ids):
        return {item: self.catalog[item] for item in item_ids if item in self.catalog}

    async def read_progress(self, group, sources):
        return ({source: self.positions[source] for source in set(sources) if source in self.positions},
                {source: self.attempts[source] for source in set(sources) if source in self.attempts})

    async def record_crash_attempts(self, group, attempts):
        self.attempts.update(attempts)


class RecordingOutbox:
    def __init__(self):
        self.dead, self.feedbacks, self.retrains, self.alerts, self.summaries = [], [], [], [], []

    async def dead_letter(self, message, reason):
        self.dead.append((message.topic, reason, message.value))

    async def feedback(self, event):
        self.feedbacks.append(event)

    async def retrain_request(self, request):
        self.retrains.append(request)

    async def drift_alert(self, alert):
        self.alerts.append(alert)

    async def online_summaries(self, records):
        self.summaries += records

    async def flush(self):
        pass
