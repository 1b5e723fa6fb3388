"""Decode and validate: each message becomes an event, or a dead letter with its reason."""

from __future__ import annotations

from streams.events import ProductRecord
from streams.pipeline.batch import BatchState, Decoded
from streams.session_features import touched_items
from streams.settings import Settings
from streams.validation import EventValidator, InvalidEvent


class Decode:
    def __init__(self, settings: Settings, in_event_time_order: bool = False):
        self.validator = EventValidator(settings)
        self.in_event_time_order = in_event_time_order

    def __call__(self, batch: BatchState) -> None:
        for message in batch.messages:
            crashes = batch.skipped.get((message.topic, message.partition, message.offset))
            try:
                if crashes:
                    raise InvalidEvent(f"{crashes} workers stopped while processing it (crash-loop breaker)")
                event = self.validator.validate(message.topic, message.value, key=message.key)
                items = [event.item_id] if isinstance(event, ProductRecord) else touched_items(event)
                batch.valid.append(Decoded(message, event, items))
            except InvalidEvent as exc:
                batch.refuse(message, str(exc))
        # Clicks and purchases arrive on different topics, so a batch may hold an order
        # before the clicks that led to it: restore event-time order within the batch.
        if self.in_event_time_order:
            batch.valid.sort(key=lambda decoded: decoded.event.ts)
