"""A Spark-made version: its artifact written by the executors, its lists written to Redis by them.

The artifact has the local engine's files; each customer list table is a folder of Parquet
parts (``recommendations.parquet/part-*.parquet``), which ``Artifact.frame`` reads as one
table. Publishing raises the version's fence on the driver first; then each partition of
each list table writes its customers' lists with pipelined, fenced script calls (the
publisher's own encoding and fence); the shop-wide keys (products, similar items, segments,
popular lists) follow from the driver. A partition that Spark retries writes the same keys
again: list writes are plain SETs, so nothing is counted twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pandas as pd

from offline.model_export import SLOT_FILES
from offline.publish import (Publication, batched, catalog_records, customer_list_commands, list_encoder,
                             raise_fence, read_dismissals, shop_commands)
from streams import redis_keys
from streams.connections import redis_client
from streams.model_artifacts import Artifact
from streams.settings import Settings

SLOT_KEYS = {"recs": redis_keys.recs, "buyagain": redis_keys.buy_again, "discover": redis_keys.discover}


def write_tables(tables: dict, staged: Path) -> None:
    """Each DataFrame (by file name) as a folder of Parquet parts in the staged version."""
    for name, table in tables.items():
        folder = staged / name
        table.write.mode("error").parquet(str(folder))
        for leftover in folder.iterdir():  # Spark's success marker and checksums are not part of the version
            if not leftover.name.endswith(".parquet"):
                leftover.unlink()


def publish_from_executors(spark, artifact: Artifact, settings: Settings) -> int:
    """Write the version's lists from the executors and its shop-wide keys from the driver, under the
    version's fence; return the number of keys written."""
    client = redis_client(settings)
    try:
        fence = raise_fence(client, artifact.version)
        dismissals = read_dismissals(client, time.time())
        now = time.time()
        written = sum(_lists_from_executors(spark, artifact, slot, settings, fence, dismissals, now)
                      for slot in SLOT_KEYS)
        shop = Publication(artifact.version, [], artifact.frame("similar_items.parquet"),
                           artifact.frame("segments.parquet"), artifact.json("popular.json"))
        encoded = list_encoder(artifact.version, settings.explain_lists, now)
        return written + batched(shop_commands(shop, catalog_records(artifact), encoded, fence), client, lambda n: None)
    finally:
        client.close()


def _lists_from_executors(spark, artifact: Artifact, slot: str, settings: Settings, fence: str,
                          dismissals: dict[str, set[str]], now: float) -> int:
    version, key = artifact.version, SLOT_KEYS[slot]
    shared = spark.sparkContext.broadcast(dismissals)

    def write_partition(rows: Iterator) -> Iterator[int]:
        frame = pd.DataFrame([row.asDict() for row in rows], columns=["user_id", "items", "scores", "reasons",
                                                                       "evidence"])
        client = redis_client(settings)
        try:
            encoded = list_encoder(version, settings.explain_lists, now)
            commands = customer_list_commands([(key, frame)], encoded, fence, settings.recs_ttl_seconds, shared.value)
            yield batched(commands, client, lambda n: None)
        finally:
            client.close()

    table = spark.read.parquet(str(artifact.path / SLOT_FILES[slot]))
    return int(sum(table.rdd.mapPartitions(write_partition).collect()))
