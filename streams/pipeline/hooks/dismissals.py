"""Dismissed items go to Redis too (``dismissed:{user_id}``): the worker's lists leave them out
through the session features, and a model version published later leaves them out from this."""

from __future__ import annotations

from streams.events import ClickEvent
from streams.pipeline.fold import FoldHook, FoldStep


class Dismissals(FoldHook):
    def __init__(self, dismiss_seconds: float):
        self.dismiss_seconds = dismiss_seconds

    def after(self, step: FoldStep) -> None:
        event = step.event
        if isinstance(event, ClickEvent) and event.type == "dismiss":
            step.batch.dismissals.setdefault(event.user_id, {})[event.item_id] = event.ts + self.dismiss_seconds
