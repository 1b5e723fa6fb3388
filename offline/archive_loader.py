"""Reads the worker's Parquet event archive back as purchase history and catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from offline.retail_history import HISTORY_COLUMNS, HistoryError


def _read(root: Path, kind: str) -> pd.DataFrame:
    folder = root / kind
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        return pd.DataFrame()
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table().to_pandas()


def load_archive(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(order lines in the history schema, items) from ``ARCHIVE_DIR``; redeliveries are dropped."""
    root = Path(root)
    lines = _read(root, "purchases")
    if lines.empty:
        raise HistoryError(f"{root} holds no archived purchases; run a worker with ARCHIVE_DIR set first")
    lines = lines.drop_duplicates(["event_id", "item_id", "quantity", "unit_price"])
    products = _read(root, "products")
    titles = (products.sort_values("ts", na_position="first").drop_duplicates("item_id", keep="last")
              .set_index("item_id") if not products.empty else pd.DataFrame(columns=["title", "category", "price"]))
    history = pd.DataFrame({
        "order_id": lines["order_id"].astype(str),
        "user_id": lines["user_id"].astype(str),
        "item_id": lines["item_id"].astype(str),
        "description": lines["item_id"].map(titles["title"]).fillna("") if len(titles) else "",
        "quantity": lines["quantity"].astype("int64"),
        "price": lines["unit_price"].astype(float),
        "timestamp": pd.to_datetime(lines["ts"], unit="s"),
        "country": lines["country"].fillna(""),
    })[HISTORY_COLUMNS]
    items = titles.rename(columns={"title": "text"}).reset_index()[["item_id", "text", "category", "price"]] \
        if len(titles) else None
    return history.sort_values("timestamp", kind="stable").reset_index(drop=True), items
