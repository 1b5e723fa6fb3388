"""Credit the event's items to the lists the customer was shown (``streams.attribution``)."""

from __future__ import annotations

from streams.attribution import attribute, first_clicks
from streams.pipeline.fold import FoldHook, FoldStep


class Attribution(FoldHook):
    def __init__(self, window_seconds: float):
        self.window_seconds = window_seconds

    def before(self, step: FoldStep) -> None:
        step.earned = attribute(step.features, step.event, self.window_seconds)
        step.clicked_lists = first_clicks(step.features, step.earned)
