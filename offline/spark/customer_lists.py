"""Every customer's three lists, built on the executors by the local engine's own code.

Spark splits the customers into buckets. Each bucket's order lines become an ``Interactions``
of those customers in the shop's item space, and every published model serves them
(``BatchRecommender.serving``) with what it learned of items from the whole history:
popularity scores, co-occurrence neighbours, ALS item factors, the hybrid's rankers and the
shop's item traits, broadcast once to each executor. A customer's lists depend on their own
lines and on those, never on who shares their bucket, so the lists, fill-ins and reasons are
the local export's (``offline.model_export.chunk_lists``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from models.base import BatchRecommender
from models.hybrid import ITEM_TRAITS, LearnedHybrid
from models.interactions import EVENT_COLUMNS, Interactions
from offline.model_export import chunk_lists
from offline.explanations import ListExplainer
from offline.selection import PER_MODEL, Selection
from offline.spark.reading import plain_text
from offline.training import TrainedModels

LIST_SCHEMA = ("slot string, user_id string, items array<string>, scores array<double>, reasons array<string>, "
               "evidence array<string>")
CUSTOMERS_PER_BUCKET = 20_000  # a bucket is one task: its customers' lines and scores fit an executor's memory
CHUNK = 2048  # customers ranked together within a bucket, as the local export ranks them


@dataclass
class ShopModels:
    """What every bucket of customers shares: the published models fitted on the whole history
    (no customer's data in them), the hybrid's members and rankers, and the shop's items."""

    components: dict[str, BatchRecommender]
    members: list[str]
    rankers: dict | None
    selection: Selection
    item_ids: np.ndarray
    catalog: pd.DataFrame
    end: pd.Timestamp
    item_traits: dict[str, np.ndarray]

    def trained_for(self, lines: pd.DataFrame, user_factors: pd.DataFrame | None = None) -> TrainedModels:
        """The models serving the customers of ``lines`` (and, for ALS, their ``user_factors``:
        user_id and features)."""
        data = Interactions(lines[EVENT_COLUMNS], self.item_ids, self.catalog, self.end)
        data.preset(ITEM_TRAITS, self.item_traits)
        components = {name: model.serving(data) for name, model in self.components.items()}
        if "als" in components:
            factors = user_factors.set_index("user_id")["features"].reindex(data.user_ids)
            components["als"].user_factors = np.vstack(factors.to_numpy()).astype(np.float32) if len(factors) else \
                np.zeros((0, components["als"].item_factors.shape[1]), dtype=np.float32)
        hybrid = LearnedHybrid([components[name] for name in self.members], self.rankers, PER_MODEL, data) \
            if self.rankers else None
        return TrainedModels(data, None, self.selection, components, hybrid)


def lists_of(trained: TrainedModels, k: int) -> Iterator[pd.DataFrame]:
    """The three lists of every customer of ``trained``, a frame per slot and chunk, with a ``slot`` column."""
    explainer = ListExplainer(trained.data)
    for start in range(0, trained.data.n_users, CHUNK):
        rows = np.arange(start, min(start + CHUNK, trained.data.n_users))
        for slot, frame in chunk_lists(trained, explainer, rows, k).items():
            yield frame.assign(slot=slot)


def customer_lists(history, shop: ShopModels, k: int, user_factors=None):
    """A DataFrame of every customer's lists (slot, user_id, items, scores, reasons, evidence),
    computed bucket by bucket on the executors."""
    from pyspark.sql import functions as F

    spark = history.lines.sparkSession
    shared = spark.sparkContext.broadcast(shop)
    buckets = max(spark.sparkContext.defaultParallelism, -(-history.n_users // CUSTOMERS_PER_BUCKET))
    bucket = F.abs(F.xxhash64("user_id")) % buckets
    lines = history.lines.select(*EVENT_COLUMNS).withColumn("bucket", bucket).groupBy("bucket")
    columns = ["slot", "user_id", "items", "scores", "reasons", "evidence"]

    def bucket_lists(lines: pd.DataFrame, factors: pd.DataFrame | None = None) -> pd.DataFrame:
        if lines.empty:
            return pd.DataFrame(columns=columns)
        frames = list(lists_of(shared.value.trained_for(lines, factors), k))
        return plain_text(pd.concat(frames, ignore_index=True)[columns])

    if user_factors is None:
        # One parameter: Spark passes a two-parameter function the group's key first.
        return lines.applyInPandas(lambda bucket: bucket_lists(bucket), LIST_SCHEMA)
    return lines.cogroup(user_factors.withColumn("bucket", bucket).groupBy("bucket")).applyInPandas(
        bucket_lists, LIST_SCHEMA)


def slot_table(lists, slot: str):
    """One slot's rows of ``customer_lists``, in the artifact's list schema."""
    return lists.filter(lists.slot == slot).drop("slot")
