"""Score each purchase against the lists the model would have served before it (``streams.prequential``)."""

from __future__ import annotations

from models.base import STATIC_LISTS
from streams.events import PurchaseEvent
from streams.pipeline.batch import ServingModel
from streams.pipeline.fold import FoldHook, FoldStep
from streams.prequential import score_purchase


class PrequentialScoring(FoldHook):
    def __init__(self, model: ServingModel, gap_seconds: float):
        self.model = model
        self.gap_seconds = gap_seconds

    def before(self, step: FoldStep) -> None:
        if isinstance(step.event, PurchaseEvent) and STATIC_LISTS in self.model.recommender.capabilities:
            score_purchase(self.model.recommender, step.features, step.event, step.effects.prequential,
                           self.gap_seconds)
