"""The history as a Spark DataFrame, read on the executors.

Generic interactions are read one file per task by the local engine's own loader
(``offline.interactions_loader``), so both engines apply the same rules, raise the same
errors (with the file's line numbers) and produce the same columns. A shop with a large
history gives a folder of files (the way Spark, Hive and warehouse exports write tables):
its files are read side by side. Each file's forms (day-first dates, decimal commas, a
rating's scale) are recognised within that file, as they would be were it loaded alone.
The worker's event archive is read with Spark's own Parquet reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from offline.interactions_loader import input_files, load_interactions
from offline.retail_history import HISTORY_COLUMNS, HistoryError

HISTORY_SCHEMA = ("order_id string, user_id string, item_id string, description string, quantity long, "
                  "price double, timestamp timestamp, country string, weight double")
COLUMNS = [*HISTORY_COLUMNS, "weight"]


def _loaded(paths: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    for chunk in paths:
        for path in chunk["path"]:
            yield plain_text(load_interactions(path)[COLUMNS])


def plain_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its text columns as Python objects: Spark's Arrow writer takes no pandas
    strings backed by chunked Arrow arrays, which a large file's columns are."""
    text = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype) or dtype == "str"]
    return frame.astype({name: object for name in text})


def read_interactions(spark, path: str | Path):
    """Order lines of the interactions file or folder ``path``, in the history schema."""
    files = input_files(path)
    listing = spark.createDataFrame([(file,) for file in files], "path string").repartition(len(files))
    return listing.mapInPandas(_loaded, HISTORY_SCHEMA)


def from_frame(spark, history: pd.DataFrame):
    """A history already on the driver (the built-in data sets) as a Spark DataFrame."""
    frame = history.assign(weight=history["weight"] if "weight" in history else 1.0)[COLUMNS]
    return spark.createDataFrame(plain_text(frame), HISTORY_SCHEMA)


def read_archive(spark, root: str | Path):
    """(order lines, items frame or None) from the worker's event archive at ``root``, as
    ``offline.archive_loader`` reads it: redeliveries dropped, titles from the latest product records."""
    from pyspark.sql import functions as F

    root = Path(root)
    if not any((root / "purchases").rglob("*.parquet")):
        raise HistoryError(f"{root} holds no archived purchases; run a worker with ARCHIVE_DIR set first")
    lines = spark.read.parquet(str(root / "purchases")).dropDuplicates(
        ["event_id", "item_id", "quantity", "unit_price"])
    titles = _latest_products(spark, root / "products")
    if titles is not None:
        lines = lines.join(titles.select("item_id", F.col("title").alias("description")), "item_id", "left")
    else:
        lines = lines.withColumn("description", F.lit(None).cast("string"))
    history = lines.select(
        F.col("order_id").cast("string"), F.col("user_id").cast("string"), F.col("item_id").cast("string"),
        F.coalesce("description", F.lit("")).alias("description"), F.col("quantity").cast("long"),
        F.col("unit_price").cast("double").alias("price"),
        F.timestamp_micros(F.round(F.col("ts") * 1e6).cast("long")).alias("timestamp"),
        F.coalesce("country", F.lit("")).alias("country"), F.lit(1.0).alias("weight"))
    items = titles.select("item_id", F.col("title").alias("text"), "category", "price").toPandas() \
        if titles is not None else None
    return history, items


def _latest_products(spark, folder: Path):
    """Each item's latest product record, or None where the archive has none."""
    from pyspark.sql import Window, functions as F

    if not any(folder.rglob("*.parquet")):
        return None
    latest = Window.partitionBy("item_id").orderBy(F.col("ts").desc_nulls_last())
    return (spark.read.parquet(str(folder)).withColumn("n", F.row_number().over(latest))
            .filter("n = 1").drop("n", "date"))
