"""A training run on the Spark engine, from the history to a published version.

1. The history is read on the executors (``reading``) and summarised into customer-item
   pairs (``scores.SparkHistory``).
2. Validation and the guard are the local engine's own code (``offline.training.choose_models``),
   run on the driver on a random share of customers (the whole history up to
   ``LARGE_HISTORY`` order lines, where the local engine also chooses on all of it).
   Models that the Spark engine does not compute are left out with their reason before the
   guard decides, so it chooses among what can be published.
3. The kept components are computed on the executors (``scores``), customers are segmented
   (``segments``), every customer's lists are built (``lists``), and the version is written and
   published from the executors (``export``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from models.popularity import best_items
from offline.components import LARGE_HISTORY
from offline.model_export import (SIMILAR_ITEMS, SIMILARITY_BLEND, SLOT_FILES, category_lists, item_table_of, parquet_bytes,
                                  segment_profiles)
from offline.publish import announce_model
from offline.release import ManifestFacts, version_manifest
from offline.selection import Selection, guard
from offline.spark import lists, scores
from offline.spark.export import publish_from_executors, write_tables
from offline.spark.scores import CustomerScores, ItemScores, SparkHistory
from offline.spark.segments import segment_customers
from offline.training import Clock, check_history_size, choose_models, interactions, report_choices
from streams.model_artifacts import ArtifactStore, new_version
from streams.settings import Settings

Progress = Callable[[str], None]
# The models the Spark engine computes, in the order they are fitted.
SPARK_COMPONENTS = ("popularity", "trending", "repeat", "cooccurrence", "als")
# ALS candidates past k per customer, from which a list of unbought items is drawn.
ALS_MARGIN = 100


@dataclass
class SparkRelease:
    version: str
    selection: Selection
    seconds: dict[str, float] = field(default_factory=dict)
    redis_keys: int = 0


def train_and_publish_on_spark(conf: Settings, spark, lines, items: pd.DataFrame | None, origin: str, publish: bool,
                               step: Progress, validation: str | None = None) -> SparkRelease:
    """Train on the order lines ``lines`` (a Spark DataFrame in the history schema), write a version
    and, with ``publish``, write Redis from the executors and announce the version."""
    seconds: dict[str, float] = {}
    clock = Clock(seconds)
    history = SparkHistory.of(spark, lines)
    check_history_size(history.n_users, history.n_items, history.n_lines, step)
    clock("history")
    sample = history.customer_sample(LARGE_HISTORY).sort_values("timestamp", kind="stable").reset_index(drop=True)
    choice = choose_models(interactions(sample, items), step, validation)
    seconds.update(choice.seconds)
    selection = choice.selection
    keep_what_spark_computes(selection, choice.capabilities)
    report_choices(selection, step)
    clock("validation")
    fitted = fit_on_spark(history, selection, conf.recs_count, step)
    clock("final fit")
    segmentation, segments, features = segment_customers(history)
    step(f"segments: k={segmentation.k} by silhouette")
    clock("segmentation")
    digest = history_hash(history)
    version = new_version(digest)
    store = ArtifactStore(conf.artifact_dir)
    staged = store.stage(version)
    write_tables({SLOT_FILES["recs"]: _slot(history, fitted, selection, "ALL", conf.recs_count),
                  SLOT_FILES["buyagain"]: lists.buy_again_lists(history, fitted["repeat"], conf.recs_count),
                  SLOT_FILES["discover"]: _slot(history, fitted, selection, "NEW", conf.recs_count)}, staged)
    write_tables({"segments.parquet": segments, "customer_features.parquet": features}, staged)
    for name, payload in _shop_files(history, fitted, segmentation, segments, items, conf.recs_count).items():
        (staged / name).write_bytes(payload)
    clock("export")
    facts = ManifestFacts(list(fitted), False, segmentation.k, history.n_users, history.n_items, history.n_lines,
                          seconds, engine="spark")
    artifact = store.seal(version, version_manifest(selection, facts, digest, origin,
                                                    conf.recs_count))
    step(f"artifact {artifact.path}")
    release = SparkRelease(version, selection, seconds)
    if not publish:
        step("not published; `recsys train --publish` writes Redis and tells running workers")
        return release
    release.redis_keys = publish_from_executors(spark, store.load(version), conf)
    announce_model(artifact, conf)
    step(f"published {release.redis_keys:,} Redis keys from the executors and announced {version} "
         f"on {conf.topic_model_updates}")
    return release


def keep_what_spark_computes(selection: Selection, capabilities: dict[str, frozenset]) -> None:
    """Leave out, with their reason, the models the Spark engine does not compute, then let the guard
    choose again among the rest."""
    for name in list(selection.scores):
        if name == "hybrid":
            selection.leave_out(name, "the Spark engine does not score the hybrid's candidates yet")
        elif name not in SPARK_COMPONENTS:
            selection.leave_out(name, "the Spark engine does not compute it")
    guard(selection, capabilities)


def fit_on_spark(history: SparkHistory, selection: Selection, k: int, step: Progress
                 ) -> dict[str, ItemScores | CustomerScores]:
    """The components the lists, popular lists and similar items draw on, computed on the executors
    with the settings validation chose for them."""
    needed = {"popularity", "repeat", "trending", "cooccurrence", *selection.published.values()}
    fitted = {}
    for name in SPARK_COMPONENTS:
        if name in needed and name in selection.params:
            started = time.monotonic()
            fitted[name] = _fit(name, history, selection.params[name], k)
            step(f"{name} on Spark ({time.monotonic() - started:.1f} s)")
    return fitted


def _fit(name: str, history: SparkHistory, params: dict, k: int) -> ItemScores | CustomerScores:
    if name in ("popularity", "trending"):
        return scores.popularity(history, name, **params)
    if name == "repeat":
        return scores.repeat(history, **params)
    if name == "cooccurrence":
        similarity = scores.cooccurrence_similarity(history).persist()
        return scores.cooccurrence(history, similarity, **params)
    return scores.als(history, k + ALS_MARGIN, **params)


def _slot(history: SparkHistory, fitted: dict, selection: Selection, view: str, k: int):
    unbought = view == "NEW" or selection.recs_unbought
    return lists.slot_lists(history, fitted[selection.published[view]], fitted["popularity"], k, unbought)


def history_hash(history: SparkHistory) -> str:
    """A digest of the order lines that does not depend on how Spark partitioned them."""
    from pyspark.sql import functions as F

    total = history.lines.select(F.sum(F.xxhash64(*history.lines.columns).cast("decimal(38,0)"))).first()[0]
    return hashlib.sha256(f"{history.n_lines}:{total}".encode()).hexdigest()


def _shop_files(history: SparkHistory, fitted: dict, segmentation, segments, items: pd.DataFrame | None,
                k: int) -> dict[str, bytes]:
    """The files every customer shares: similar items, complements, products, popular lists, profiles."""
    catalog = item_table_of(history.item_ids, item_catalog(history, items))
    cooccurrence = fitted.get("cooccurrence")
    return {
        "similar_items.parquet": parquet_bytes(similar_items(history, cooccurrence, SIMILARITY_BLEND["cooccurrence"])),
        "complements.parquet": parquet_bytes(similar_items(history, cooccurrence, 1.0)),
        "items.parquet": parquet_bytes(catalog),
        "popular.json": json.dumps(popular_lists(history, fitted, segments, catalog["category"], k)).encode(),
        "segment_profiles.json": segment_profiles(segmentation),
    }


def item_catalog(history: SparkHistory, items: pd.DataFrame | None) -> pd.DataFrame:
    """As ``offline.training.item_catalog``: each item's most frequent description (equal counts: the
    one met first) and median price, under the items file's own values where given."""
    from pyspark.sql import Window, functions as F

    described = history.lines.groupBy("item_id", "description").agg(F.count("*").alias("n"),
                                                                     F.min("timestamp").alias("first"))
    most = Window.partitionBy("item_id").orderBy(F.col("n").desc(), "first", "description")
    text = described.withColumn("rank", F.row_number().over(most)).filter("rank = 1") \
        .select("item_id", F.col("description").alias("text"))
    price = history.lines.groupBy("item_id").agg(F.median("price").alias("price"))
    derived = text.join(price, "item_id").toPandas().set_index("item_id")
    return derived if items is None or items.empty else items.set_index("item_id").combine_first(derived)


def similar_items(history: SparkHistory, cooccurrence: CustomerScores | None, weight: float) -> pd.DataFrame:
    """Each item's ``SIMILAR_ITEMS`` best co-bought items, scores scaled so the best pair is ``weight``
    (``offline.model_export.similar_items`` without descriptions)."""
    empty = pd.DataFrame({"item_id": history.item_ids, "items": [[] for _ in history.item_ids],
                          "scores": [[] for _ in history.item_ids]})
    if cooccurrence is None:
        return empty
    from pyspark.sql import Window, functions as F

    similarity = cooccurrence.similarity
    top = similarity.agg(F.max("similarity")).first()[0] or 0.0
    best = Window.partitionBy("col").orderBy(F.col("similarity").desc(), "other_col")
    ranked = (similarity.filter(F.col("similarity") > 0).withColumn("n", F.row_number().over(best))
              .filter(F.col("n") <= SIMILAR_ITEMS)
              .groupBy("item_id").agg(F.sort_array(F.collect_list(F.struct("n", "other", "similarity"))).alias("s"))
              .select("item_id", F.col("s.other").alias("items"), F.col("s.similarity").alias("raw")).toPandas())
    scale = weight / max(top, 1e-9)
    ranked["scores"] = [np.round(np.asarray(raw, dtype=np.float32) * np.float32(scale), 4).tolist() for raw in ranked["raw"]]
    found = ranked.set_index("item_id")
    empty["items"] = [list(found["items"].get(item, [])) for item in history.item_ids]
    empty["scores"] = [list(found["scores"].get(item, [])) for item in history.item_ids]
    return empty


def popular_lists(history: SparkHistory, fitted: dict, segments, categories: pd.Series, k: int) -> dict:
    """popular.json: best sellers overall, per segment, trending (when kept) and per category."""
    popularity: ItemScores = fitted["popularity"]
    by_segment = scores.segment_popularity(history, popularity.recent_share, segments)
    alltime = scores.item_counts(history, history.pairs)
    lists_ = {"all": best_items(popularity.scores, history.item_ids, k),
              "segments": {segment: best_items(vector, history.item_ids, k) for segment, vector in by_segment.items()},
              "categories": category_lists(popularity.scores, alltime, history.item_ids, categories, k)}
    if "trending" in fitted:
        lists_["trending"] = best_items(fitted["trending"].scores, history.item_ids, k)
    return lists_
