"""Each purchase moves its customer's online segment (River clusters named after the offline
segments) and feeds the order-value drift detector."""

from __future__ import annotations

from models.online_segments import OnlineSegments
from models.purchase_drift import PurchaseDrift
from streams.events import DriftAlert, PurchaseEvent
from streams.pipeline.batch import ServingModel
from streams.pipeline.fold import FoldHook, FoldStep
from streams.session_features import order_value


class Segments(FoldHook):
    def __init__(self, model: ServingModel, algorithm: str):
        self.model = model
        self.online_segments = OnlineSegments(algorithm)
        self.purchase_drift = PurchaseDrift()

    def after(self, step: FoldStep) -> None:
        if not isinstance(step.event, PurchaseEvent):
            return
        user_id, features = step.event.user_id, step.features
        # What segment:{user_id} held: the online segment, else the one publishing wrote.
        previous = step.segment_before or self.model.offline_segments.get(user_id, "")
        cluster = self.online_segments.learn_predict_one(features.customer.features())
        offline = self.model.offline_segments.get(user_id)
        if offline is not None:
            self.online_segments.observe_offline(cluster, offline)
        features.segment = self.online_segments.name(cluster)
        # SET is idempotent, so the segment is written even for an event Redis counted before a crash.
        step.batch.segments[user_id] = features.segment
        if features.segment != previous:
            step.effects.segment_moves[previous] -= 1
            step.effects.segment_moves[features.segment] += 1
        change = self.purchase_drift.update(order_value(step.event))
        if change is not None:
            step.effects.alerts.append(DriftAlert("order_value", round(change[0], 2), round(change[1], 2),
                                                  step.event.ts))
