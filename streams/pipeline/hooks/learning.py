"""The streaming model learns from every new event, weighted by how strongly the action says
"I want this item"."""

from __future__ import annotations

from models.base import Interaction
from streams.events import ClickEvent
from streams.pipeline.batch import ServingModel
from streams.pipeline.fold import FoldHook, FoldStep

ACTION_WEIGHTS = {"view": 0.1, "add_to_cart": 0.3, "remove_from_cart": 0.0, "dismiss": 0.0, "purchase": 1.0}


class Learning(FoldHook):
    def __init__(self, model: ServingModel):
        self.model = model

    def after(self, step: FoldStep) -> None:
        event = step.event
        weight = ACTION_WEIGHTS[event.type if isinstance(event, ClickEvent) else "purchase"]
        recommenders = self.model.recommenders
        for item in step.items:
            interaction = Interaction(event.user_id, item, event.ts, weight, step.context)
            for recommender in recommenders:
                recommender.learn_one(interaction)
