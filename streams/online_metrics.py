"""The worker's online metrics, exported in Prometheus format at ``/metrics`` on its web server.

Two kinds, both on one page:

* counters and a histogram of what this worker did since it started
  (``recsys_events_total``, ``recsys_lists_written_total``, ...), for PromQL rates;
* ``recsys_window_*`` gauges: the last minute of the whole stream, as summed in
  the windowed Faust table (``streams.online_summaries``). Each scope lives on
  the worker that owns its partition, so summing a gauge over workers is exact.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.online_summaries import FRESHNESS_BUCKETS


class OnlineMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.events_total = Counter("recsys_events", "Events consumed, by topic and outcome (valid, dead_letter, duplicate)",
                              ["topic", "outcome"], registry=self.registry)
        self.lists_total = Counter("recsys_lists_written", "Recommendation lists written to Redis",
                             ["model_version", "segment"], registry=self.registry)
        self.clicked_lists_total = Counter("recsys_clicked_lists", "Lists written that earned at least one credited "
                                           "view (counted at the first)", ["model_version", "segment"],
                                           registry=self.registry)
        self.feedback_total = Counter("recsys_feedback", "Attributed actions on recommended items",
                                ["action", "model_version", "segment", "attribution"], registry=self.registry)
        self.freshness = Histogram("recsys_list_freshness_seconds",
                                   "From an event reaching Kafka to its user's list written in Redis",
                                   buckets=FRESHNESS_BUCKETS, registry=self.registry)
        self.hit_rate = Gauge("recsys_purchase_hit_rate_ratio", "Share of purchases with an item from the served list, "
                              "over the last window", ["model_version"], registry=self.registry)
        self.retrain_requests = Counter("recsys_retrain_requests", "retrain-requested events emitted",
                                        registry=self.registry)
        self.fenced_batches = Counter("recsys_fenced_batches", "Batches whose lists Redis refused because a newer "
                                      "model version is published", registry=self.registry)
        self.experiment_outcomes = Counter("recsys_experiment_outcomes", "What an experiment's customers did, per "
                                           "arm: lists written, clicked lists, purchases, hits, revenue",
                                           ["experiment", "arm", "outcome"], registry=self.registry)
        self.recovered_messages = Counter("recsys_recovered_messages", "Messages the consumer did not deliver "
                                          "(lost in a rebalance), read back from Kafka", registry=self.registry)
        self.crash_loop_skips = Counter("recsys_crash_loop_skips", "Messages dead-lettered because workers kept "
                                        "stopping while processing them", registry=self.registry)

    # The same three calls as ``BatchSummaries``: a batch's facts go to both through one loop.
    def events(self, counters: dict[str, int]) -> None:
        for key, amount in counters.items():
            outcome, _, topic = key.partition(":")
            self.events_total.labels(topic=topic, outcome=outcome).inc(amount)

    def list_written(self, model_version: str, segment: str, freshness_seconds: float | None) -> None:
        self.lists_total.labels(model_version=model_version, segment=segment).inc()
        if freshness_seconds is not None and freshness_seconds >= 0:
            self.freshness.observe(freshness_seconds)

    def list_clicked(self, model_version: str, segment: str) -> None:
        self.clicked_lists_total.labels(model_version=model_version, segment=segment).inc()

    def feedback(self, action: str, model_version: str, segment: str, attribution: str) -> None:
        self.feedback_total.labels(action=action, model_version=model_version, segment=segment,
                                   attribution=attribution).inc()

    def export_window(self, read_window: Callable[[], dict]) -> None:
        """Add the ``recsys_window_*`` gauges, computed from ``read_window()`` at every scrape."""
        self.registry.register(WindowCollector(read_window))

    def export_consumer_lag(self, monitor) -> None:
        """Add ``recsys_consumer_lag_messages``, read from Faust's monitor at every scrape."""
        self.registry.register(ConsumerLagCollector(monitor))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ConsumerLagCollector(Collector):
    """Per assigned partition, the messages between the group's last commit and the partition's
    end as the latest fetch reported it: what this worker still has to process."""

    def __init__(self, monitor):
        self.monitor = monitor

    def collect(self):
        lag = GaugeMetricFamily("recsys_consumer_lag_messages", "Messages not yet processed and committed, per "
                                "partition this worker consumes", labels=["topic", "partition"])
        committed = self.monitor.tp_committed_offsets
        read = self.monitor.tp_read_offsets
        for tp, end in sorted(self.monitor.tp_end_offsets.items()):
            done = committed.get(tp, read.get(tp, -1) + 1)
            lag.add_metric([tp.topic, str(tp.partition)], max(end - done, 0))
        yield lag


class WindowCollector(Collector):
    def __init__(self, read_window: Callable[[], dict]):
        self.read_window = read_window

    def collect(self):
        report = self.read_window()
        labels = ["model_version", "segment"]
        seconds = GaugeMetricFamily("recsys_window_seconds", "Length of the window the recsys_window_* gauges cover")
        seconds.add_metric([], report["seconds"])
        events = GaugeMetricFamily("recsys_window_events_per_second", "Valid events per second over the window")
        events.add_metric([], report["events_per_second"])
        dead = GaugeMetricFamily("recsys_window_dead_letters_per_second", "Dead letters per second over the window")
        dead.add_metric([], report["dead_letters_per_second"])
        # Quantiles over a sliding window are gauges, one per quantile: a "quantile" label is
        # reserved for summaries, whose counts only grow.
        freshness = []
        for percentile in ("p50", "p99"):
            gauge = GaugeMetricFamily(f"recsys_window_freshness_{percentile}_seconds",
                                      f"Event reaching Kafka to list written in Redis, {percentile} over the window")
            value = report[f"freshness_{percentile}_seconds"]
            if value is not None:
                gauge.add_metric([], value)
            freshness.append(gauge)
        lists = GaugeMetricFamily("recsys_window_lists", "Lists written over the window", labels=labels)
        ctr = GaugeMetricFamily("recsys_window_click_through_ratio", "Share of the lists written that earned a "
                                "credited view", labels=labels)
        hit = GaugeMetricFamily("recsys_window_purchase_hit_rate_ratio",
                                "Share of purchases with an item from the served list", labels=labels)
        for scope in report["scopes"]:
            key = [scope["model_version"], scope["segment"]]
            lists.add_metric(key, scope["lists"])
            if scope["click_through"] is not None:
                ctr.add_metric(key, scope["click_through"])
            if scope["purchase_hit_rate"] is not None:
                hit.add_metric(key, scope["purchase_hit_rate"])
        yield from (seconds, events, dead, *freshness, lists, ctr, hit)
