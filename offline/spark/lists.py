"""Every customer's three lists, built on the executors the way the local export builds them
(``offline.model_export``): ``recs`` from the guard's ALL model, ``buyagain`` from repeat
purchases, ``discover`` from the guard's NEW model with never-bought items only; recs and
discover are filled with popular items (score 0, reason ``trending``). Rows follow the
artifact's list schema: user_id, items, scores, reasons, evidence."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from models.explanations import TRENDING
from offline.spark.scores import CustomerScores, ItemScores, SparkHistory

LIST_SCHEMA = ("user_id string, items array<string>, scores array<double>, reasons array<string>, "
               "evidence array<string>")
# Popular items past k that a list of unbought items may draw on: a customer who bought more
# of the shop's best sellers than this gets a shorter list.
EXCLUSION_MARGIN = 200
SCORE_DIGITS = 4


def _ranked(scores: np.ndarray, depth: int) -> np.ndarray:
    """The positions of the ``depth`` best positive scores, equal ones in column order."""
    best = np.argsort(-scores, kind="stable")[:depth]
    return best[scores[best] > 0]


def slot_lists(history: SparkHistory, model: ItemScores | CustomerScores, popular: ItemScores, k: int,
               unbought: bool):
    """Each customer's ``k`` best items of ``model`` (none they bought where ``unbought``), filled
    with ``popular``'s best they do not already have."""
    from pyspark.sql import functions as F

    depth = k + EXCLUSION_MARGIN if unbought else k
    fill = history.item_ids[_ranked(popular.scores, depth)]
    vector = None
    rows = history.pairs.select("user_id").distinct()
    if isinstance(model, CustomerScores):
        own = model.candidates
        if unbought:
            own = own.join(history.pairs.select("user_id", "item_id"), ["user_id", "item_id"], "left_anti")
        rows = rows.join(best_per_customer(own, k), "user_id", "left")
    else:
        best = _ranked(model.scores, depth)
        vector = (history.item_ids[best], model.scores[best])
    if unbought:
        listed = set(fill) | (set(vector[0]) if vector is not None else set())
        rows = rows.join(_bought_among(history, listed), "user_id", "left")
    return rows.mapInPandas(_assembler(fill, vector, k, "excluded" if unbought else None), LIST_SCHEMA)


def buy_again_lists(history: SparkHistory, repeat: CustomerScores, k: int):
    """Each customer's ``k`` items most worth buying again, unfilled."""
    return best_per_customer(repeat.candidates, k).mapInPandas(_assembler(np.array([], dtype=object), None, k, None),
                                                              LIST_SCHEMA)


def best_per_customer(candidates, k: int):
    """user_id and, best first (equal scores: the lower column), the ``k`` best candidates'
    items, scores, codes and evidence as arrays."""
    from pyspark.sql import Window, functions as F

    best = Window.partitionBy("user_id").orderBy(F.col("score").desc(), "col")
    ranked = candidates.withColumn("n", F.row_number().over(best)).filter(F.col("n") <= k)
    listed = ranked.groupBy("user_id").agg(F.sort_array(F.collect_list(
        F.struct("n", "item_id", "score", "code", "evidence"))).alias("own"))
    return listed.select("user_id", *(F.col(f"own.{field}").alias(f"own_{field}")
                                      for field in ("item_id", "score", "code", "evidence")))


def _bought_among(history: SparkHistory, items: set[str]):
    """user_id and the customer's bought items among ``items`` (an array, ``excluded``)."""
    from pyspark.sql import functions as F

    spark = history.pairs.sparkSession
    wanted = spark.createDataFrame(pd.DataFrame({"item_id": sorted(map(str, items))}), "item_id string")
    return (history.pairs.join(F.broadcast(wanted), "item_id").groupBy("user_id")
            .agg(F.collect_list("item_id").alias("excluded")))


def _assembler(fill: np.ndarray, vector: tuple[np.ndarray, np.ndarray] | None, k: int, excluded: str | None):
    """The function that turns rows of (user_id, own arrays, excluded) into list rows."""
    def assemble(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            yield pd.DataFrame([_one_list(row, fill, vector, k, excluded) for row in chunk.itertuples(index=False)],
                               columns=["user_id", "items", "scores", "reasons", "evidence"])

    return assemble


def _one_list(row, fill: np.ndarray, vector, k: int, excluded_column: str | None) -> tuple:
    own = getattr(row, "own_item_id", None)
    has_own = own is not None and len(own) > 0
    items = list(own) if has_own else []
    scores = [round(float(s), SCORE_DIGITS) for s in row.own_score] if has_own else []
    reasons = list(row.own_code) if has_own else []
    evidence = list(row.own_evidence) if has_own else []
    excluded = getattr(row, excluded_column) if excluded_column else None
    unwanted = set(excluded) if excluded is not None else set()
    if vector is not None:
        for item, score in zip(*vector):
            if len(items) == k:
                break
            if item not in unwanted:
                items.append(item), scores.append(round(float(score), SCORE_DIGITS))
                reasons.append(TRENDING), evidence.append("")
    taken = set(items)
    for item in fill:
        if len(items) >= k:
            break
        if item not in taken and item not in unwanted:
            items.append(item), scores.append(0.0), reasons.append(TRENDING), evidence.append("")
    return row.user_id, items, scores, reasons, evidence
