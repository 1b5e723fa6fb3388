"""What the customers of a running experiment do with the lists their arm wrote: clicked lists,
purchases, purchases with a listed item, revenue; per customer, so the report can give confidence
intervals. Counted once, with the batch's other counters."""

from __future__ import annotations

from streams.events import PurchaseEvent
from streams.pipeline.batch import ServingModel
from streams.pipeline.fold import FoldHook, FoldStep
from streams.session_features import order_value


class ExperimentOutcomes(FoldHook):
    def __init__(self, model: ServingModel):
        self.model = model

    def after(self, step: FoldStep) -> None:
        experiment = self.model.experiment
        # Only customers who were shown their arm's list in this experiment count: exposure starts the outcome.
        if experiment is None or step.last_served is None or step.last_served.experiment != experiment.name:
            return
        user_id, count = step.event.user_id, step.effects.experiment_outcome
        for _ in step.clicked_lists:
            count(experiment.name, "clicked", user_id)
        if isinstance(step.event, PurchaseEvent):
            count(experiment.name, "purchases", user_id)
            count(experiment.name, "hits", user_id, int(any(f.action == "purchase" for f in step.earned)))
            count(experiment.name, "revenue", user_id, order_value(step.event))
