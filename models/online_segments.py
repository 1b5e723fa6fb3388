"""Incremental customer segments: a River clusterer updated on every purchase.

Each purchase updates the customer's running statistics (``CustomerStream``);
their log-scaled features (the offline segmentation's, minus recency, which is
always zero at a purchase) are standardised online and clustered by one of
River's online clusterers. Online clusters get business names by majority
vote of the offline K-Means segments of the customers they hold, so the two
speak the same language.

>>> seg = OnlineSegments("kmeans", n_clusters=2, seed=1)
>>> stats = CustomerStream()
>>> for day in range(5):
...     stats.add_order(ts=day * 86400.0, lines=3, units=30, value=90.0)
>>> cluster = seg.learn_predict_one(stats.features())
>>> seg.observe_offline(cluster, "steady regular")
>>> seg.name(cluster)
'steady regular'
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import msgspec
from river import cluster, preprocessing

DAY = 86400.0
ALGORITHMS = ("kmeans", "dbstream", "clustream")


class CustomerStream(msgspec.Struct):
    """Running RFM and basket statistics of one customer, updated per order."""

    orders: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    previous_ts: float = 0.0
    lines: int = 0
    units: int = 0
    spend: float = 0.0

    def add_order(self, ts: float, lines: int, units: int, value: float) -> None:
        if self.orders == 0:
            self.first_ts = ts
        self.previous_ts = self.last_ts if self.orders else ts
        self.last_ts = max(self.last_ts, ts)
        self.orders += 1
        self.lines += lines
        self.units += units
        self.spend += value

    def features(self) -> dict[str, float]:
        span_days = (self.last_ts - self.first_ts) / DAY
        return {
            "frequency": math.log1p(self.orders),
            "monetary": math.log1p(self.spend),
            "basket_lines": math.log1p(self.lines / max(self.orders, 1)),
            "basket_value": math.log1p(self.spend / max(self.orders, 1)),
            "days_between_orders": math.log1p(span_days / max(self.orders - 1, 1)),
            "avg_unit_price": math.log1p(self.spend / max(self.units, 1)),
        }


def make_clusterer(algorithm: str, n_clusters: int = 4, seed: int = 0):
    if algorithm == "kmeans":
        model = cluster.KMeans(n_clusters=n_clusters, halflife=0.1, sigma=1.0, seed=seed)
    elif algorithm == "dbstream":
        model = cluster.DBSTREAM(clustering_threshold=1.5, fading_factor=0.01, cleanup_interval=4,
                                 intersection_factor=0.5, minimum_weight=1.0)
    elif algorithm == "clustream":
        model = cluster.CluStream(n_macro_clusters=n_clusters, max_micro_clusters=50, time_gap=500, seed=seed)
    else:
        raise ValueError(f"unknown online clusterer {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    return preprocessing.StandardScaler() | model


class OnlineSegments:
    def __init__(self, algorithm: str = "kmeans", n_clusters: int = 4, seed: int = 0):
        self.algorithm = algorithm
        self.model = make_clusterer(algorithm, n_clusters, seed)
        self._votes: dict[int, Counter] = defaultdict(Counter)

    def learn_predict_one(self, features: dict[str, float]) -> int:
        self.model.learn_one(features)
        return self.predict_one(features)

    def predict_one(self, features: dict[str, float]) -> int:
        return int(self.model.predict_one(features))

    def observe_offline(self, cluster_id: int, offline_segment: str) -> None:
        """Record that a customer in ``cluster_id`` belongs to ``offline_segment`` offline."""
        self._votes[cluster_id][offline_segment] += 1

    def name(self, cluster_id: int) -> str:
        votes = self._votes.get(cluster_id)
        return votes.most_common(1)[0][0] if votes else f"online-{cluster_id}"
