"""Each kept component's scores, computed on the executors.

The definitions are the local engine's (``models/``); only where the numbers are computed
differs. A component answers either one score per item that every customer shares
(popularity, trending: ``ItemScores``) or each customer's candidate items with a score and
the reason each is there (repeat, co-occurrence, ALS: ``CustomerScores``, a DataFrame of
``user_id, item_id, col, score, code, evidence``). ``col`` is the item's position in the
sorted item ids, as the local engine numbers its columns: equal scores rank by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from models.explanations import BOUGHT_BEFORE, DISCOVER, SIMILAR_TO
from models.interactions import DAY
from models.popularity import popularity_scores

# A customer's most recent distinct items that enter the co-occurrence self-join: the join's
# size grows with the square of a history's length, and a few wholesale accounts with
# thousands of items would otherwise make most of it.
HISTORY_CAP = 500


@dataclass
class SparkHistory:
    """Order lines and their customer-item pairs (as ``Interactions.pairs``: distinct orders,
    quantity, last purchase, strongest weight, days since the last purchase)."""

    lines: object  # DataFrame in the history schema
    pairs: object  # DataFrame: user_id, item_id, col, orders, quantity, last, weight, age_days
    item_ids: np.ndarray
    start: datetime
    end: datetime
    n_users: int
    n_lines: int

    @classmethod
    def of(cls, spark, lines) -> "SparkHistory":
        from pyspark.sql import functions as F

        lines = lines.persist()
        start, end, n_lines = lines.agg(F.min("timestamp"), F.max("timestamp"), F.count("*")).first()
        item_ids = np.array(sorted(row.item_id for row in lines.select("item_id").distinct().collect()), dtype=object)
        columns = spark.createDataFrame(pd.DataFrame({"item_id": item_ids.astype(str), "col": np.arange(len(item_ids))}))
        pairs = (lines.groupBy("user_id", "item_id")
                 .agg(F.countDistinct("order_id").alias("orders"), F.sum("quantity").alias("quantity"),
                      F.max("timestamp").alias("last"), F.max("weight").alias("weight"))
                 .join(F.broadcast(columns), "item_id")
                 .withColumn("age_days", (F.lit(_micros(end)) - F.unix_micros("last")) / 1e6 / DAY)
                 .persist())
        n_users = pairs.select("user_id").distinct().count()
        return cls(lines, pairs, item_ids, start, end, n_users, n_lines)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def decayed(self, half_life_days: float):
        """The pairs with ``score``: distinct orders times weight, halved every ``half_life_days``
        since the last purchase (``Interactions.decayed``)."""
        from pyspark.sql import functions as F

        return self.pairs.withColumn(
            "score", F.col("orders") * F.col("weight") * F.pow(F.lit(2.0), -F.col("age_days") / half_life_days))

    def customer_sample(self, max_lines: int, seed: int = 0) -> pd.DataFrame:
        """The order lines of a random share of customers, about ``max_lines`` lines, on the
        driver; the whole history when it is no larger. Customers are drawn by a hash of their
        id, so the draw needs no list of every customer."""
        from pyspark.sql import functions as F

        chosen = self.lines
        if self.n_lines > max_lines:
            share = max_lines / self.n_lines
            chosen = chosen.filter((F.abs(F.xxhash64("user_id", F.lit(seed))) % 1_000_000) < share * 1_000_000)
        return chosen.toPandas()


def _micros(moment) -> int:
    return int(pd.Timestamp(moment).value // 1000)


@dataclass
class ItemScores:
    """One score per item (aligned with the history's ``item_ids``), shared by every customer."""

    name: str
    scores: np.ndarray
    recent_share: float


@dataclass
class CustomerScores:
    """Each customer's candidate items: a DataFrame of user_id, item_id, col, score, code, evidence."""

    name: str
    candidates: object
    similarity: object = None  # item-item models: DataFrame of item_id, col, other, other_col, similarity


def recent_buyers(history: SparkHistory, recent_share: float, by=None):
    """Distinct buyers per item (and per ``by``'s groups, a DataFrame of user_id and group)
    whose last purchase falls in the most recent ``recent_share`` of the history's span."""
    from pyspark.sql import functions as F

    since = pd.Timestamp(history.end) - (pd.Timestamp(history.end) - pd.Timestamp(history.start)) * recent_share
    recent = history.pairs.filter(F.unix_micros("last") >= _micros(since))
    if by is not None:
        recent = recent.join(by, "user_id")
    return recent


def item_counts(history: SparkHistory, pairs) -> np.ndarray:
    """How many of ``pairs`` each item has, aligned with ``item_ids``."""
    counted = pairs.groupBy("col").count().toPandas()
    counts = np.zeros(history.n_items)
    counts[counted["col"].to_numpy()] = counted["count"].to_numpy()
    return counts


def popularity(history: SparkHistory, name: str, recent_share: float) -> ItemScores:
    """``models.popularity.RecentPopularity``: recent buyers per item, all-time buyers breaking ties."""
    alltime = item_counts(history, history.pairs)
    recent = item_counts(history, recent_buyers(history, recent_share))
    return ItemScores(name, popularity_scores(recent, alltime, history.n_users), recent_share)


def segment_popularity(history: SparkHistory, recent_share: float, segments) -> dict[str, np.ndarray]:
    """Popularity within each segment (``segments``: DataFrame of user_id, segment); a segment with no
    recent buyers ranks what its customers bought over all time, as the local engine does."""
    alltime = item_counts(history, history.pairs)
    recent = recent_buyers(history, recent_share, segments).groupBy("segment", "col").count().toPandas()
    scored = _per_segment(recent, alltime, history)
    quiet = set(segments.select("segment").distinct().toPandas()["segment"]) - set(scored)
    if quiet:
        everyone = history.pairs.join(segments.filter(segments.segment.isin(sorted(quiet))), "user_id")
        scored.update(_per_segment(everyone.groupBy("segment", "col").count().toPandas(), alltime, history))
    return scored


def _per_segment(counted: pd.DataFrame, alltime: np.ndarray, history: SparkHistory) -> dict[str, np.ndarray]:
    scored = {}
    for segment, part in counted.groupby("segment"):
        counts = np.zeros(history.n_items)
        counts[part["col"].to_numpy()] = part["count"].to_numpy()
        scored[segment] = popularity_scores(counts, alltime, history.n_users)
    return scored


def repeat(history: SparkHistory, half_life_days: float) -> CustomerScores:
    """``models.repeat_purchase.RepeatPurchase``: each item the customer bought, by decayed orders;
    the reason says how often and when last."""
    from pyspark.sql import functions as F

    evidence = F.concat_ws("|", F.col("orders").cast("string"), F.date_format("last", "yyyy-MM-dd"))
    return CustomerScores("repeat", history.decayed(half_life_days).select(
        "user_id", "item_id", "col", "score", F.lit(BOUGHT_BEFORE).alias("code"), evidence.alias("evidence")))


def cooccurrence_similarity(history: SparkHistory, neighbours: int = 100, cap: int = HISTORY_CAP):
    """``models.cooccurrence.ItemCooccurrence``'s similarity: the Jaccard index of two items' buyers,
    each item keeping its ``neighbours`` best others (equal scores: the lower column first).
    DataFrame of item_id, col, other, other_col, similarity."""
    from pyspark.sql import Window, functions as F

    latest = Window.partitionBy("user_id").orderBy(F.col("last").desc(), "col")
    capped = (history.pairs.withColumn("n", F.row_number().over(latest)).filter(F.col("n") <= cap)
              .select("user_id", "item_id", "col"))
    other = capped.select("user_id", F.col("item_id").alias("other"), F.col("col").alias("other_col"))
    together = capped.join(other, "user_id").filter(F.col("col") != F.col("other_col")) \
        .groupBy("item_id", "col", "other", "other_col").agg(F.count("*").alias("together"))
    buyers = history.pairs.groupBy("col").agg(F.count("*").alias("buyers"))
    jaccard = (together.join(buyers, "col")
               .join(buyers.select(F.col("col").alias("other_col"), F.col("buyers").alias("other_buyers")), "other_col")
               .withColumn("similarity", F.col("together") / (F.col("buyers") + F.col("other_buyers") - F.col("together"))))
    best = Window.partitionBy("col").orderBy(F.col("similarity").desc(), "other_col")
    return (jaccard.withColumn("n", F.row_number().over(best)).filter(F.col("n") <= neighbours)
            .select("item_id", "col", "other", "other_col", "similarity", "together"))


def cooccurrence(history: SparkHistory, similarity, history_half_life_days: float) -> CustomerScores:
    """A customer's score for an item: the similarity of the item to their decayed history, plus the
    item's own history weight (SAR's self-similarity). The reason names the customer's item that
    pulls the item most (history weight x similarity; equal pulls: the lower column)."""
    from pyspark.sql import functions as F

    weights = history.decayed(history_half_life_days).select("user_id", "item_id", "col", F.col("score").alias("weight"))
    pulls = weights.join(similarity, ["item_id", "col"]).select(
        "user_id", F.col("other").alias("item_id"), F.col("other_col").alias("col"),
        (F.col("weight") * F.col("similarity")).alias("pull"), F.col("item_id").alias("source"),
        F.col("col").alias("source_col"))
    own = weights.select("user_id", "item_id", "col", F.col("weight").alias("pull"),
                         F.lit(None).cast("string").alias("source"), F.lit(None).cast("long").alias("source_col"))
    strength = F.when(F.col("source").isNotNull(), F.struct(F.col("pull"), -F.col("source_col")))
    scored = pulls.unionByName(own).groupBy("user_id", "item_id", "col").agg(
        F.sum("pull").alias("score"), F.max_by("source", strength).alias("source"),
        F.max(F.when(F.col("source").isNotNull(), F.col("pull"))).alias("strongest"))
    found = F.coalesce(F.col("strongest") > 0, F.lit(False))
    return CustomerScores("cooccurrence", scored.select(
        "user_id", "item_id", "col", "score", F.when(found, F.lit(SIMILAR_TO)).otherwise(F.lit(DISCOVER)).alias("code"),
        F.when(found, F.col("source")).otherwise(F.lit("cooccurrence")).alias("evidence")), similarity)


def als(history: SparkHistory, candidates: int, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
        iterations: int = 15, seed: int = 0) -> CustomerScores:
    """``models.factorization.ImplicitALS`` on MLlib: Hu, Koren & Volinsky's weighted ALS on
    confidence ``alpha * weight * log(1 + orders)``; each customer's ``candidates`` best items."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    users = history.pairs.select("user_id").distinct().rdd.map(lambda row: row.user_id).zipWithIndex() \
        .toDF(["user_id", "user"])
    ratings = history.pairs.join(users, "user_id").select(
        "user", "col", (F.log1p("orders") * F.col("weight")).cast("float").alias("rating"))
    model = ALS(rank=factors, maxIter=iterations, regParam=regularization, alpha=alpha, implicitPrefs=True,
                userCol="user", itemCol="col", ratingCol="rating", seed=seed, blockSize=128,
                coldStartStrategy="drop").fit(ratings)
    columns = history.pairs.select("col", "item_id").distinct()
    best = (model.recommendForAllUsers(candidates).select("user", F.explode("recommendations").alias("r"))
            .select("user", F.col("r.col").alias("col"), F.col("r.rating").cast("double").alias("score")))
    return CustomerScores("als", best.join(users, "user").join(F.broadcast(columns), "col").select(
        "user_id", "item_id", "col", "score", F.lit(DISCOVER).alias("code"), F.lit("als").alias("evidence")))
