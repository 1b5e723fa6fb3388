"""A training run on the Spark engine, from the history to a published version.

1. The history is read on the executors (``reading``) and summarised into customer-item
   pairs (``scores.SparkHistory``).
2. Validation and the guard are the local engine's own code (``offline.training.choose_models``),
   run on the driver on a random share of customers (the whole history up to
   ``LARGE_HISTORY`` order lines, where the local engine also chooses on all of it), over the
   components this engine computes and their hybrid.
3. What the kept components learn of items is computed on the executors from every customer
   (``scores``), customers are segmented (``segments``), every customer's lists are built by
   the local engine's models bucket by bucket (``customer_lists``), and the version is written
   and published from the executors (``export``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.content import ContentSimilarity
from models.cooccurrence import ItemCooccurrence
from models.customer_neighbours import CustomerNeighbours
from models.ease import EASE
from models.factorization import ImplicitALS
from models.hybrid import category_codes, item_traits
from models.popularity import RecentPopularity, best_items
from offline.components import COMPONENTS, LARGE_HISTORY, ComponentSpec
from offline.model_export import (SLOT_FILES, SLOTS, category_lists, complements, item_table_of, parquet_bytes,
                                  ranker_file, segment_profiles, similar_items)
from offline.publish import announce_model
from offline.release import ManifestFacts, version_manifest
from offline.selection import Selection
from offline.spark import scores
from offline.spark.customer_lists import ShopModels, customer_lists, slot_table
from offline.spark.export import publish_from_executors, write_tables
from offline.spark.scores import SparkHistory
from offline.spark.segments import segment_customers
from offline.training import Choice, Clock, check_history_size, choose_models, interactions, report_choices
from streams.model_artifacts import ArtifactStore, new_version
from streams.settings import Settings

Progress = Callable[[str], None]
# The models the Spark engine computes: validation scores these, and the guard chooses among them.
SPARK_COMPONENTS = tuple(spec for spec in COMPONENTS if spec.name in (
    "popularity", "trending", "repeat", "cooccurrence", "ease", "als", "customer-knn", "content"))
# The hybrid's members: components whose scores the Spark engine computes as the local engine does,
# to the digit, since its rankers learned them on validation (MLlib's ALS finds other factors).
HYBRID_MEMBERS = ("popularity", "trending", "repeat", "cooccurrence", "ease", "customer-knn", "content")
NOT_ON_SPARK = "not computed by the Spark engine: it learns a factor or bias per customer on one machine"
# Components every version needs: popular fill-ins and lists, buy-again lists, similar items.
ALWAYS = ("popularity", "trending", "repeat", "cooccurrence")


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
    specs, left_out = components_for(history)
    choice = choose_models(interactions(sample, items), step, validation, specs, HYBRID_MEMBERS, left_out)
    seconds.update(choice.seconds)
    report_choices(choice.selection, step)
    clock("validation")
    catalog = item_catalog(history, items)
    fitted = fit_on_spark(history, choice, catalog, step)
    clock("final fit")
    segmentation, segments, features = segment_customers(history)
    step(f"segments: k={segmentation.k} by silhouette")
    clock("segmentation")
    digest = history_hash(history)
    version = new_version(digest)
    store = ArtifactStore(conf.artifact_dir)
    staged = store.stage(version)
    lists = customer_lists(history, fitted.shop, conf.recs_count, fitted.user_factors).persist()
    write_tables({SLOT_FILES[slot]: slot_table(lists, slot) for slot in SLOTS}, staged)
    lists.unpersist()
    write_tables({"segments.parquet": segments, "customer_features.parquet": features}, staged)
    for name, payload in _shop_files(history, fitted, segmentation, segments, catalog, conf.recs_count).items():
        (staged / name).write_bytes(payload)
    clock("export")
    shop = fitted.shop
    facts = ManifestFacts(list(shop.components), shop.rankers is not None, segmentation.k, history.n_users,
                          history.n_items, history.n_lines, seconds, engine="spark")
    artifact = store.seal(version, version_manifest(choice.selection, facts, digest, origin, conf.recs_count))
    step(f"artifact {artifact.path}")
    release = SparkRelease(version, choice.selection, seconds)
    if not publish:
        step("not published; `recsys train --publish` writes Redis and tells running workers")
        return release
    release.redis_keys = publish_from_executors(spark, store.load(version), conf)
    announce_model(artifact, conf)
    step(f"published {release.redis_keys:,} Redis keys from the executors and announced {version} "
         f"on {conf.topic_model_updates}")
    return release


def components_for(history: SparkHistory) -> tuple[tuple[ComponentSpec, ...], dict[str, str]]:
    """The components validation tries on the sample, and why the others are left out: the local
    engine's own size limits, read against the whole history (``BatchRecommender.refuses``), and
    the components this engine does not compute."""
    size = SimpleNamespace(n_users=history.n_users, n_items=history.n_items)
    left_out = {spec.name: NOT_ON_SPARK for spec in COMPONENTS if spec not in SPARK_COMPONENTS}
    for spec in SPARK_COMPONENTS:
        if (reason := spec.build(spec.grid[0]).refuses(size)) is not None:
            left_out[spec.name] = reason
    return tuple(spec for spec in SPARK_COMPONENTS if spec.name not in left_out), left_out


@dataclass
class SparkFit:
    """The published models as every bucket of customers shares them, and ALS's customer factors
    (a DataFrame) where ALS is published."""

    shop: ShopModels
    user_factors: object | None


def fit_on_spark(history: SparkHistory, choice: Choice, catalog: pd.DataFrame, step: Progress) -> SparkFit:
    """What the published lists draw on, learned on the executors from every customer, with the
    settings validation chose."""
    selection = choice.selection
    hybrid = "hybrid" in selection.published.values()
    needed = {*ALWAYS, *selection.published.values(), *(choice.members if hybrid else ())}
    components, user_factors = {}, None
    for spec in SPARK_COMPONENTS:
        if spec.name not in needed or spec.name not in selection.params:
            continue
        started = time.monotonic()
        model = spec.build(selection.params[spec.name])
        if isinstance(model, RecentPopularity):
            model = type(model).from_scores(model.recent_share, scores.popularity(history, model.recent_share))
        elif isinstance(model, ItemCooccurrence):
            model.similarity = _matrix(scores.cooccurrence_similarity(history, model.neighbours), history.n_items)
        elif isinstance(model, EASE):  # only over its most bought items: the Gram matrix is collected
            columns = model.columns_of(history.buyers)
            model.fit_gram(scores.purchase_gram(history, columns), columns, history.n_items)
        elif isinstance(model, CustomerNeighbours):
            model.fit_pool(*scores.customer_pool(history, model.max_pool))
        elif isinstance(model, ContentSimilarity):
            model.fit_items(catalog.reindex(history.item_ids), history.buyers)
        elif isinstance(model, ImplicitALS):
            model.item_factors, user_factors = scores.als(history, model.factors, model.regularization, model.alpha,
                                                          model.iterations, model.seed)
        components[spec.name] = model
        step(f"{spec.name} on Spark ({time.monotonic() - started:.1f} s)")
    repeaters = scores.item_counts(history, history.pairs.filter("orders > 1"))
    traits = item_traits(history.buyers, repeaters, history.n_users, category_codes(catalog, history.item_ids))
    shop = ShopModels(components, choice.members, choice.rankers if hybrid else None, selection, history.item_ids,
                      catalog, pd.Timestamp(history.end), traits)
    return SparkFit(shop, user_factors)


def _matrix(similarity, n_items: int) -> sp.csr_matrix:
    """The neighbours as the local engine holds them: items x items, float32."""
    pairs = similarity.select("col", "other_col", "similarity").toPandas()
    return sp.csr_matrix((pairs["similarity"].to_numpy(dtype=np.float32),
                          (pairs["col"].to_numpy(), pairs["other_col"].to_numpy())), shape=(n_items, n_items))


def history_hash(history: SparkHistory) -> str:
    """A digest of the order lines that does not depend on how Spark partitioned them."""
    from pyspark.sql import functions as F

    total = history.lines.select(F.sum(F.xxhash64(*history.lines.columns).cast("decimal(38,0)"))).first()[0]
    return hashlib.sha256(f"{history.n_lines}:{total}".encode()).hexdigest()


def _shop_files(history: SparkHistory, fitted: SparkFit, segmentation, segments, catalog: pd.DataFrame,
                k: int) -> dict[str, bytes]:
    """The files every customer shares: similar items, complements, products, popular lists, profiles,
    and the hybrid's rankers where it is published."""
    shop = fitted.shop
    items = item_table_of(history.item_ids, catalog)
    files = {
        "similar_items.parquet": parquet_bytes(similar_items(shop.components, history.item_ids)),
        "complements.parquet": parquet_bytes(complements(shop.components, history.item_ids)),
        "items.parquet": parquet_bytes(items),
        "popular.json": json.dumps(popular_lists(history, fitted.shop.components, segments, items["category"],
                                                 k)).encode(),
        "segment_profiles.json": segment_profiles(segmentation),
    }
    if shop.rankers is not None:
        files["ranker.joblib"] = ranker_file(shop.rankers, [shop.components[name] for name in shop.members])
    return files


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


def popular_lists(history: SparkHistory, components: dict, segments, categories: pd.Series, k: int) -> dict:
    """popular.json: best sellers overall, per segment, trending (when kept) and per category."""
    popularity: RecentPopularity = components["popularity"]
    by_segment = scores.segment_popularity(history, popularity.recent_share, segments)
    lists = {"all": best_items(popularity.overall, history.item_ids, k),
             "segments": {segment: best_items(vector, history.item_ids, k) for segment, vector in by_segment.items()},
             "categories": category_lists(popularity.overall, history.buyers, history.item_ids, categories, k)}
    if "trending" in components:
        lists["trending"] = best_items(components["trending"].overall, history.item_ids, k)
    return lists
