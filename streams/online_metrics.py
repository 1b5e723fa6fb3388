"""The worker's online metrics, exported in Prometheus format at ``/metrics`` on its web server.

Counters carry labels so rates per model version and segment come straight
from PromQL (e.g. click-through = rate(feedback{action="view"}) /
rate(lists_written)); ``snapshot`` computes the same ratios for the dashboard.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OnlineMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.events = Counter("recsys_events", "Events consumed, by topic and outcome (valid, dead_letter, duplicate)",
                              ["topic", "outcome"], registry=self.registry)
        self.lists = Counter("recsys_lists_written", "Recommendation lists written to Redis",
                             ["model_version", "segment"], registry=self.registry)
        self.feedback = Counter("recsys_feedback", "Attributed actions on recommended items",
                                ["action", "model_version", "segment", "attribution"], registry=self.registry)
        self.freshness = Histogram("recsys_list_freshness_seconds",
                                   "From an event reaching Kafka to its user's list written in Redis",
                                   buckets=FRESHNESS_BUCKETS, registry=self.registry)
        self.hit_rate = Gauge("recsys_purchase_hit_rate", "Share of purchases with an item from the served list, "
                              "over the last window", ["model_version"], registry=self.registry)
        self.retrain_requests = Counter("recsys_retrain_requests", "retrain-requested events emitted",
                                        registry=self.registry)
        # Plain tallies for snapshot(): label values of a Counter are not cheap to read back.
        self._lists: dict[tuple[str, str], int] = defaultdict(int)
        self._feedback: dict[tuple[str, str, str], int] = defaultdict(int)

    def count_events(self, counters: dict[str, int]) -> None:
        for key, amount in counters.items():
            outcome, _, topic = key.partition(":")
            self.events.labels(topic=topic, outcome=outcome).inc(amount)

    def list_written(self, model_version: str, segment: str, freshness_seconds: float | None) -> None:
        self.lists.labels(model_version=model_version, segment=segment).inc()
        self._lists[(model_version, segment)] += 1
        if freshness_seconds is not None and freshness_seconds >= 0:
            self.freshness.observe(freshness_seconds)

    def feedback_seen(self, action: str, model_version: str, segment: str, attribution: str) -> None:
        self.feedback.labels(action=action, model_version=model_version, segment=segment,
                             attribution=attribution).inc()
        self._feedback[(action, model_version, segment)] += 1

    def snapshot(self) -> list[dict]:
        """Click-through (views per list) and purchases per list, per model version and segment."""
        rows = []
        for (version, segment), lists in sorted(self._lists.items()):
            views = self._feedback.get(("view", version, segment), 0)
            purchases = self._feedback.get(("purchase", version, segment), 0)
            rows.append({"model_version": version, "segment": segment, "lists": lists,
                         "click_through": views / lists, "purchases_per_list": purchases / lists})
        return rows

    def render(self) -> bytes:
        return generate_latest(self.registry)
