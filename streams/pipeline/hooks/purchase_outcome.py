"""Whether a purchase had an item from the list the customer was shown: online hit-rate, and a
retrain request when it falls."""

from __future__ import annotations

from models.hit_rate_monitor import HitRateMonitor
from streams.events import PurchaseEvent, RetrainRequest
from streams.online_metrics import OnlineMetrics
from streams.pipeline.batch import ServingModel
from streams.pipeline.fold import FoldHook, FoldStep


class PurchaseOutcome(FoldHook):
    def __init__(self, model: ServingModel, metrics: OnlineMetrics, monitor: HitRateMonitor):
        self.model = model
        self.metrics = metrics
        self.monitor = monitor

    def after(self, step: FoldStep) -> None:
        if not isinstance(step.event, PurchaseEvent) or step.last_served is None:
            return
        hits = [f for f in step.earned if f.action == "purchase"]
        step.effects.summaries.purchase(hits[0].model_version if hits else step.last_served.model_version,
                                        step.segment_before, hit=bool(hits))
        step.effects.retrain = self._watch(bool(hits), step.event.ts) or step.effects.retrain

    def _watch(self, hit: bool, ts: float) -> RetrainRequest | None:
        dropped = self.monitor.update(hit)
        self.metrics.hit_rate.labels(model_version=self.model.version).set(self.monitor.hit_rate)
        if not dropped:
            return None
        self.metrics.retrain_requests.inc()
        baseline, now = self.monitor.last_drop
        return RetrainRequest(self.model.version, round(baseline, 4), round(now, 4), self.monitor.seen, ts)
