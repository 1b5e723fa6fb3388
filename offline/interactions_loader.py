"""Loads any shop's export: interactions (CSV or Parquet) and an optional items file.

Interactions need ``user_id, item_id, timestamp``; ``quantity``, ``price`` and
``order_id`` are optional (lines of one user at one timestamp form an order
when ``order_id`` is absent). Items need ``item_id`` and may carry ``text``,
``category`` and ``price``. Bad rows are reported with their line numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from offline.retail_history import HISTORY_COLUMNS, HistoryError

REQUIRED = ["user_id", "item_id", "timestamp"]
MAX_REPORTED = 5


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"user_id": str, "item_id": str, "order_id": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HistoryError(f"{path}: cannot read ({exc})") from None


def _bad_rows(path, mask: pd.Series, what: str) -> None:
    if mask.any():
        lines = ", ".join(str(n + 2) for n in mask[mask].index[:MAX_REPORTED])  # +2: header and 1-based lines
        raise HistoryError(f"{path}: {int(mask.sum())} rows with {what} (lines {lines}{', ...' if mask.sum() > MAX_REPORTED else ''})")


def load_interactions(path: str | Path) -> pd.DataFrame:
    """Interactions in the history schema; raises HistoryError naming the bad column or rows."""
    raw = _read_table(path).reset_index(drop=True)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise HistoryError(f"{path}: missing columns {', '.join(missing)}; need {', '.join(REQUIRED)}")
    frame = pd.DataFrame({"user_id": raw["user_id"].astype("string").str.strip(),
                          "item_id": raw["item_id"].astype("string").str.strip()})
    _bad_rows(path, frame["user_id"].isna() | (frame["user_id"] == ""), "an empty user_id")
    _bad_rows(path, frame["item_id"].isna() | (frame["item_id"] == ""), "an empty item_id")
    ts = raw["timestamp"]
    frame["timestamp"] = (pd.to_datetime(ts, unit="s", errors="coerce") if pd.api.types.is_numeric_dtype(ts)
                          else pd.to_datetime(ts, errors="coerce", format="mixed"))
    _bad_rows(path, frame["timestamp"].isna(), "an unparseable timestamp")
    for column, default in (("quantity", 1), ("price", 0.0)):
        values = pd.to_numeric(raw[column], errors="coerce") if column in raw else pd.Series(default, index=raw.index)
        _bad_rows(path, values.isna() | (values < 0), f"a missing or negative {column}")
        frame[column] = values
    frame["quantity"] = frame["quantity"].astype("int64").clip(lower=1)
    frame["order_id"] = (raw["order_id"].astype(str) if "order_id" in raw
                         else frame["user_id"] + "@" + frame["timestamp"].astype("int64").astype(str))
    frame["description"] = raw["description"].astype(str) if "description" in raw else ""
    frame["country"] = raw["country"].astype(str) if "country" in raw else ""
    return frame[HISTORY_COLUMNS].astype({"user_id": str, "item_id": str}).sort_values("timestamp", kind="stable").reset_index(drop=True)


def load_items(path: str | Path) -> pd.DataFrame:
    raw = _read_table(path)
    if "item_id" not in raw.columns:
        raise HistoryError(f"{path}: missing column item_id")
    items = pd.DataFrame({"item_id": raw["item_id"].astype(str).str.strip()})
    for column in ("text", "category"):
        if column in raw:
            items[column] = raw[column].fillna("").astype(str)
    if "price" in raw:
        items["price"] = pd.to_numeric(raw["price"], errors="coerce")
    return items.drop_duplicates("item_id", keep="last")
