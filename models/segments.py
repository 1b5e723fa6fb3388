"""Customer segmentation: RFM and behaviour features, scaled, K-Means with k chosen by silhouette.

Each cluster gets a business name from rules on its centroid, compared with
the median customer, so the names follow the data rather than a fixed list.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from models.interactions import Interactions

FEATURES = ["recency_days", "frequency", "monetary", "basket_lines", "basket_value", "days_between_orders",
            "distinct_items", "avg_unit_price"]
# Heavy-tailed features are clustered on a log scale.
LOG_FEATURES = {"frequency", "monetary", "basket_lines", "basket_value", "days_between_orders", "distinct_items",
                "avg_unit_price"}


def customer_features(data: Interactions) -> pd.DataFrame:
    """One row per customer: recency, frequency, monetary value and basket behaviour."""
    # Grouped on integer codes (customer rows, orders numbered in id order): the same groups
    # in the same order as grouping on the id strings, at a fraction of the cost.
    events = data.events
    order_codes = pd.factorize(events["order_id"], sort=True)[0]
    n_orders = int(order_codes.max(initial=0)) + 1
    lines = pd.DataFrame({"order": data.event_rows * n_orders + order_codes, "ts": events["timestamp"].to_numpy(),
                          "value": (events["quantity"] * events["price"]).to_numpy()})
    orders = lines.groupby("order").agg(ts=("ts", "min"), lines=("ts", "size"), value=("value", "sum"))
    per_user = orders.groupby(orders.index // n_orders).agg(
        frequency=("ts", "size"), first=("ts", "min"), last=("ts", "max"), monetary=("value", "sum"),
        basket_lines=("lines", "mean"), basket_value=("value", "mean"))
    per_user.index = pd.Index(data.user_ids[per_user.index], name="user_id", dtype=events["user_id"].dtype)
    items = pd.DataFrame({
        "distinct_items": np.bincount(data.pairs["row"], minlength=data.n_users),
        "avg_unit_price": events["price"].groupby(data.event_rows).mean().to_numpy(),  # every customer has lines
    }, index=pd.Index(data.user_ids, name="user_id", dtype=events["user_id"].dtype))
    span = (per_user["last"] - per_user["first"]).dt.total_seconds() / 86400
    features = pd.DataFrame({
        "recency_days": (data.end - per_user["last"]).dt.total_seconds() / 86400,
        "frequency": per_user["frequency"],
        "monetary": per_user["monetary"],
        "basket_lines": per_user["basket_lines"],
        "basket_value": per_user["basket_value"],
        # One-time buyers get the whole observed period as their gap.
        "days_between_orders": np.where(per_user["frequency"] > 1, span / (per_user["frequency"] - 1).clip(lower=1),
                                        (data.end - per_user["first"]).dt.total_seconds() / 86400),
    }).join(items)
    return features[FEATURES].astype(float)


@dataclass
class SegmentProfile:
    name: str
    customers: int
    rule: str
    centroid: dict[str, float]


class CustomerSegmentation:
    """K-Means over scaled customer features; ``k`` is the candidate with the best silhouette.

    >>> rows = [(f"big{u}", "A", f"o{u}-{n}", f"2024-0{n + 1}-01", 50, 9.0) for u in range(5) for n in range(6)]
    >>> rows += [(f"small{u}", "B", f"s{u}", "2024-06-20", 1, 1.0) for u in range(5)]
    >>> events = pd.DataFrame(rows, columns=["user_id", "item_id", "order_id", "timestamp", "quantity", "price"])
    >>> seg = CustomerSegmentation(k_range=range(2, 4)).fit(
    ...     Interactions.from_frame(events.assign(timestamp=pd.to_datetime(events["timestamp"]))))
    >>> seg.k, seg.labels["big0"] != seg.labels["small0"]
    (2, True)
    """

    def __init__(self, k_range=range(3, 9), sample: int = 3000, seed: int = 0, fit_sample: int = 20_000):
        self.k_range = k_range
        self.sample = sample
        self.fit_sample = fit_sample
        self.seed = seed

    def fit(self, data: Interactions) -> "CustomerSegmentation":
        return self.fit_features(customer_features(data))

    def fit_features(self, features: pd.DataFrame) -> "CustomerSegmentation":
        """Segments of the customers that ``customer_features`` describes."""
        self.features = features
        X = self._transform_fit(self.features)
        rng = np.random.default_rng(self.seed)
        sample = rng.choice(len(X), size=min(self.sample, len(X)), replace=False)
        self.silhouette: dict[int, float] = {}
        models = {}
        # Centroids are learned on a sample; a million customers need not all take part.
        fit_rows = rng.choice(len(X), size=min(self.fit_sample, len(X)), replace=False)
        for k in self.k_range:
            if k >= len(X):
                break
            with warnings.catch_warnings():  # fewer distinct customers than k: ``_silhouette`` says so
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(X[fit_rows])
            models[k] = model
            self.silhouette[k] = _silhouette(X[sample], model.predict(X[sample]))
        if not models:
            raise ValueError("too few customers to segment")
        self.k = max(self.silhouette, key=self.silhouette.get)
        self.kmeans = models[self.k]
        clusters = self.kmeans.predict(X)
        self.profiles = self._name_clusters(clusters)
        self.labels = pd.Series([self.profiles[c].name for c in clusters], index=self.features.index)
        return self

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """Segment names for customers described by ``customer_features`` columns."""
        clusters = self.kmeans.predict(self._transform(features))
        return pd.Series([self.profiles[c].name for c in clusters], index=features.index)

    def _transform_fit(self, features: pd.DataFrame) -> np.ndarray:
        self.scaler = StandardScaler().fit(self._prepare(features))
        return self._transform(features)

    def _transform(self, features: pd.DataFrame) -> np.ndarray:
        return self.scaler.transform(self._prepare(features))

    @staticmethod
    def _prepare(features: pd.DataFrame) -> np.ndarray:
        prepared = features[FEATURES].copy()
        for column in LOG_FEATURES:
            prepared[column] = np.log1p(prepared[column].clip(lower=0))
        return prepared.to_numpy()

    def _name_clusters(self, clusters: np.ndarray) -> dict[int, SegmentProfile]:
        median = self.features.median()
        centres = {cluster: self.features[clusters == cluster].median() for cluster in range(self.k)}
        named = {cluster: _segment_rule(centre, median) for cluster, centre in centres.items()}
        # Clusters that the rules name alike are told apart by their spend, highest first.
        alike: dict[str, list[int]] = {}
        for cluster, (name, _) in named.items():
            alike.setdefault(name, []).append(cluster)
        profiles: dict[int, SegmentProfile] = {}
        for name, members in alike.items():
            members.sort(key=lambda cluster: -centres[cluster]["monetary"])
            for qualifier, cluster in zip(_spend_qualifiers(len(members)), members):
                profiles[cluster] = SegmentProfile(f"{name}{qualifier}", int((clusters == cluster).sum()),
                                                   named[cluster][1], centres[cluster].round(2).to_dict())
        return profiles


def _silhouette(X: np.ndarray, clusters: np.ndarray) -> float:
    """The silhouette of ``clusters``; -1, the worst it can be, where it is undefined: customers
    alike in every feature fall into fewer clusters than were asked for, maybe one."""
    if 1 < len(np.unique(clusters)) < len(X):
        return float(silhouette_score(X, clusters))
    return -1.0


def _spend_qualifiers(n: int) -> list[str]:
    """What tells ``n`` segments of one name apart, by spend from the highest down."""
    if n == 1:
        return [""]
    if n == 2:
        return [", higher spend", ", lower spend"]
    if n == 3:
        return [", highest spend", ", middle spend", ", lowest spend"]
    return [f", spend rank {rank}" for rank in range(1, n + 1)]


def _segment_rule(centre: pd.Series, median: pd.Series) -> tuple[str, str]:
    """A business name for a cluster's median customer, and the rule that gave it."""
    if centre["frequency"] <= 1.5 and centre["recency_days"] <= median["recency_days"]:
        return "new / one-time", f"orders <= 1.5 and recency <= {median['recency_days']:.0f} d (median)"
    if centre["recency_days"] > 2 * median["recency_days"]:
        return "lapsing", f"recency {centre['recency_days']:.0f} d > 2 x median {median['recency_days']:.0f} d"
    if centre["monetary"] >= 2 * median["monetary"] and centre["frequency"] >= 2 * median["frequency"]:
        return "high-value frequent", (f"spend {centre['monetary']:.0f} and orders {centre['frequency']:.0f} "
                                       f">= 2 x median ({median['monetary']:.0f}, {median['frequency']:.0f})")
    if centre["monetary"] < median["monetary"]:
        return "budget occasional", f"spend {centre['monetary']:.0f} < median {median['monetary']:.0f}"
    return "steady regular", "none of the rules above: around the median customer"
