"""Each kept component's scores, computed on the executors.

The definitions are the local engine's (``models/``); only where the numbers are computed
differs. Spark computes what a model learns of items from every customer: popularity scores,
co-occurrence neighbours, ALS factors. Customers are then scored bucket by bucket with the local
engine's models (``customer_lists``). ``col`` is an item's position in the sorted item ids, as
the local engine numbers its columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import DAY
from models.neighbours import jaccard, top_neighbours
from models.popularity import popularity_scores

# A customer's most recent distinct items that enter the co-occurrence counts: their cost grows
# with the square of a basket's length, and a few wholesale accounts with thousands of items
# would otherwise make most of it.
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
        columns = spark.createDataFrame(pd.DataFrame({"item_id": item_ids.astype(str),
                                                      "col": np.arange(len(item_ids))}))
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

    @cached_property
    def buyers(self) -> np.ndarray:
        """Each item's buyers over all time, aligned with ``item_ids``: counted once, read by
        popularity, EASE's choice of items, the item traits and the popular lists."""
        return item_counts(self, self.pairs)

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


def popularity(history: SparkHistory, recent_share: float) -> np.ndarray:
    """``models.popularity.RecentPopularity``'s scores: recent buyers per item, all-time buyers breaking ties."""
    recent = item_counts(history, recent_buyers(history, recent_share))
    return popularity_scores(recent, history.buyers, history.n_users)


def segment_popularity(history: SparkHistory, recent_share: float, segments) -> dict[str, np.ndarray]:
    """Popularity within each segment (``segments``: DataFrame of user_id, segment); a segment with no
    recent buyers ranks what its customers bought over all time, as the local engine does."""
    recent = recent_buyers(history, recent_share, segments).groupBy("segment", "col").count().toPandas()
    scored = _per_segment(recent, history)
    quiet = set(segments.select("segment").distinct().toPandas()["segment"]) - set(scored)
    if quiet:
        everyone = history.pairs.join(segments.filter(segments.segment.isin(sorted(quiet))), "user_id")
        scored.update(_per_segment(everyone.groupBy("segment", "col").count().toPandas(), history))
    return scored


def _per_segment(counted: pd.DataFrame, history: SparkHistory) -> dict[str, np.ndarray]:
    scored = {}
    for segment, part in counted.groupby("segment"):
        counts = np.zeros(history.n_items)
        counts[part["col"].to_numpy()] = part["count"].to_numpy()
        scored[segment] = popularity_scores(counts, history.buyers, history.n_users)
    return scored


def customer_pool(history: SparkHistory, size: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """``models.customer_neighbours.CustomerNeighbours``' pool: the ``size`` customers who bought the
    most distinct items (equal counts: the lower id first), in id order, and what each bought
    (customers x item columns), collected to the driver."""
    from pyspark.sql import functions as F

    distinct = history.pairs.groupBy("user_id").agg(F.count("*").alias("distinct"))
    pool = distinct.orderBy(F.col("distinct").desc(), "user_id").limit(size).select("user_id")
    bought = history.pairs.join(F.broadcast(pool), "user_id").select("user_id", "col").toPandas()
    pool_ids, rows = np.unique(bought["user_id"].to_numpy(dtype=object), return_inverse=True)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, bought["col"].to_numpy())),
                           shape=(len(pool_ids), history.n_items))
    return pool_ids, matrix


LINES_PER_ITEM_BLOCK = 2_500_000  # a block's task holds the baskets of every customer who bought one of its items


def cooccurrence_similarity(history: SparkHistory, neighbours: int = 100, cap: int = HISTORY_CAP):
    """``models.cooccurrence.ItemCooccurrence``'s similarity: the Jaccard index of two items' buyers,
    each item keeping its ``neighbours`` best others (equal scores: the lower column first).
    DataFrame of col, other_col, similarity.

    Items are split into blocks (by column modulo their number). Each block's task receives the
    basket of every customer who bought one of its items, and counts its items' co-buyers with
    the local engine's own sparse products (``models.neighbours.top_neighbours``): what is
    shuffled is baskets, not the pairs of a self-join, which grow with the square of a basket."""
    from pyspark.sql import Window, functions as F

    spark = history.pairs.sparkSession
    blocks = max(spark.sparkContext.defaultParallelism, -(-history.n_lines // LINES_PER_ITEM_BLOCK))
    latest = Window.partitionBy("user_id").orderBy(F.col("last").desc(), "col")
    baskets = (history.pairs.withColumn("n", F.row_number().over(latest)).filter(F.col("n") <= cap)
               .groupBy("user_id").agg(F.collect_list("col").alias("cols")))
    spread = baskets.select(F.explode(F.array_distinct(F.transform("cols", lambda col: col % blocks))).alias("block"),
                            "cols")
    shared = spark.sparkContext.broadcast(history.buyers.astype(np.float32))
    n_items = history.n_items

    def block_neighbours(table):
        import pyarrow as pa

        cols = table.column("cols").combine_chunks()
        lengths = cols.value_lengths().to_numpy(zero_copy_only=False)
        bought = sp.csr_matrix((np.ones(int(lengths.sum()), dtype=np.float32), cols.flatten().to_numpy(),
                                np.concatenate([[0], np.cumsum(lengths)])), shape=(len(cols), n_items))
        block = table.column("block")[0].as_py()
        found = top_neighbours(bought.T.tocsr(), neighbours, jaccard(shared.value),
                               rows=np.arange(block, n_items, blocks)).tocoo()
        return pa.table({"col": found.row.astype(np.int64), "other_col": found.col.astype(np.int64),
                         "similarity": found.data.astype(np.float32)})

    return spread.groupBy("block").applyInArrow(block_neighbours, "col long, other_col long, similarity float")


def als(history: SparkHistory, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0,
        iterations: int = 15, seed: int = 0):
    """``models.factorization.ImplicitALS`` on MLlib: Hu, Koren & Volinsky's weighted ALS on
    confidence ``alpha * weight * log(1 + orders)``. Returns the item factors (rows in column
    order) and a DataFrame of user_id and features."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    users = history.pairs.select("user_id").distinct().rdd.map(lambda row: row.user_id).zipWithIndex() \
        .toDF(["user_id", "user"])
    ratings = history.pairs.join(users, "user_id").select(
        "user", "col", (F.log1p("orders") * F.col("weight")).cast("float").alias("rating"))
    model = ALS(rank=factors, maxIter=iterations, regParam=regularization, alpha=alpha, implicitPrefs=True,
                userCol="user", itemCol="col", ratingCol="rating", seed=seed).fit(ratings)
    learned = model.itemFactors.toPandas()
    item_factors = np.zeros((history.n_items, factors), dtype=np.float32)
    item_factors[learned["id"].to_numpy()] = np.vstack(learned["features"].to_numpy())
    user_factors = model.userFactors.withColumnRenamed("id", "user").join(users, "user").select("user_id", "features")
    return item_factors, user_factors


# Order lines whose customers' purchase rows one task multiplies: each task sends its whole Gram
# matrix on to be summed, so fewer, larger buckets shuffle less.
LINES_PER_GRAM_BUCKET = 10_000_000


def purchase_gram(history: SparkHistory, columns: np.ndarray) -> np.ndarray:
    """The Gram matrix of the binary purchase matrix over ``columns`` (each pair's co-buyers, each
    item's buyers on the diagonal), as ``models.ease.EASE`` learns from it: each bucket of customers'
    part multiplied sparse on the executors, the parts summed by Spark."""
    from pyspark.sql import functions as F

    spark = history.pairs.sparkSession
    size = len(columns)
    positions = spark.createDataFrame(pd.DataFrame({"col": columns.astype(np.int64), "position": np.arange(size)}))

    def part(pairs: pd.DataFrame) -> pd.DataFrame:
        _, rows = np.unique(pairs["user_id"].to_numpy(dtype=object), return_inverse=True)
        bought = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, pairs["position"].to_numpy())),
                               shape=(int(rows.max(initial=-1)) + 1, size))
        gram = (bought.T @ bought).tocoo()
        return pd.DataFrame({"i": gram.row, "j": gram.col, "n": gram.data.astype(np.int64)})

    buckets = max(spark.sparkContext.defaultParallelism, -(-history.n_lines // LINES_PER_GRAM_BUCKET))
    summed = (history.pairs.join(F.broadcast(positions), "col").select("user_id", "position")
              .withColumn("bucket", F.abs(F.xxhash64("user_id")) % buckets).groupBy("bucket")
              .applyInPandas(lambda pairs: part(pairs), "i long, j long, n long")
              .groupBy("i", "j").agg(F.sum("n").alias("n")).toPandas())
    gram = np.zeros((size, size), dtype=np.float32)
    gram[summed["i"].to_numpy(), summed["j"].to_numpy()] = summed["n"].to_numpy()
    return gram
