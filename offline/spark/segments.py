"""Customer segments on the Spark engine: each customer's features computed on the executors by
the local engine's own ``customer_features`` (a customer's features depend on their lines and
the history's end only), K-Means fitted on the driver as the local engine fits it, and every
customer's segment predicted on the executors."""

from __future__ import annotations

from typing import Iterator

import pandas as pd

from models.interactions import Interactions
from models.segments import FEATURES, CustomerSegmentation, customer_features
from offline.spark.reading import plain_text
from offline.spark.scores import SparkHistory

# Customers whose features the driver collects to fit the segments on; more would add little
# (K-Means learns its centroids on a sample of 20,000 of them) and cost driver memory.
FIT_CUSTOMERS = 300_000
BUCKETS = 64
FEATURE_SCHEMA = "user_id string, " + ", ".join(f"{name} double" for name in FEATURES)


def feature_table(history: SparkHistory):
    """user_id and ``models.segments.FEATURES`` of every customer."""
    from pyspark.sql import functions as F

    end = pd.Timestamp(history.end)

    def described(lines: pd.DataFrame) -> pd.DataFrame:
        data = Interactions.from_frame(lines, end=end)
        return plain_text(customer_features(data).rename_axis("user_id").reset_index())

    return (history.lines.withColumn("bucket", F.abs(F.xxhash64("user_id")) % BUCKETS)
            .groupBy("bucket").applyInPandas(described, FEATURE_SCHEMA))


def segment_customers(history: SparkHistory) -> tuple[CustomerSegmentation, object, object]:
    """The segmentation fitted on (a sample of) the customers' features, every customer's segment
    (DataFrame of user_id, segment) and the features (DataFrame)."""
    features = feature_table(history).persist()
    fitted = features if history.n_users <= FIT_CUSTOMERS else features.sample(FIT_CUSTOMERS / history.n_users, seed=0)
    # In customer order, as the local engine lists them: K-Means' samples are drawn by position.
    collected = fitted.toPandas().sort_values("user_id").set_index("user_id")
    segmentation = CustomerSegmentation().fit_features(collected)

    def predicted(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            if chunk.empty:
                continue
            described = chunk.set_index("user_id")
            yield plain_text(segmentation.predict(described).rename("segment").rename_axis("user_id").reset_index())

    segments = features.mapInPandas(predicted, "user_id string, segment string").persist()
    return segmentation, segments, features
