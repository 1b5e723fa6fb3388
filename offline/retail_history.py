"""Loads the UCI Online Retail export and applies the product's cleaning rules.

The result is the history schema every offline step shares:
``order_id, user_id, item_id, description, quantity, price, timestamp, country``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

RETAIL_FILE = Path("online-retail") / "online_retail.csv.gz"
RAW_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
HISTORY_COLUMNS = ["order_id", "user_id", "item_id", "description", "quantity", "price", "timestamp", "country"]
PRODUCT_CODE = r"^\d{5}[A-Za-z]*$"
CURRENCY = "£"  # a UK shop: prices in pounds sterling


class HistoryError(ValueError):
    """The history file cannot be used; the message names the file and the problem."""


@dataclass
class CleaningReport:
    rows_in: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    capped: dict[str, int] = field(default_factory=dict)
    # The cancellation lines of known customers and products (user_id, item_id, quantity > 0,
    # timestamp): revenue figures take them off the lines they cancel (``net_of_cancellations``).
    cancellations: pd.DataFrame | None = None

    @property
    def rows_out(self) -> int:
        return self.rows_in - sum(self.removed.values())

    def lines(self) -> list[str]:
        out = [f"{self.rows_in:>9,} rows read"]
        out += [f"{-count:>9,} {rule}" for rule, count in self.removed.items()]
        out.append(f"{self.rows_out:>9,} rows kept")
        out += [f"{count:>9,} {rule}" for rule, count in self.capped.items()]
        return out


def retail_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / RETAIL_FILE


def read_retail_csv(path: str | Path) -> pd.DataFrame:
    """Read the raw export with ids kept as text (CustomerID arrives as ``17850.0``)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "Description": str,
                                       "CustomerID": str, "Country": str}, keep_default_na=False,
                          na_values={"CustomerID": [""], "Description": [""]})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise HistoryError(f"{path}: cannot read as Online Retail CSV ({exc})") from None
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise HistoryError(f"{path}: missing columns {', '.join(missing)}; expected {', '.join(RAW_COLUMNS)}")
    return raw


def clean_retail(raw: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the cleaning rules in order and count what each one removes."""
    report = CleaningReport(rows_in=len(raw))
    df = raw.copy()
    df["Quantity"] = pd.to_numeric(df["Quantity"], errors="coerce")
    df["UnitPrice"] = pd.to_numeric(df["UnitPrice"], errors="coerce")
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"], errors="coerce", format="mixed")
    rules = [
        ("unparseable quantity, price or date", lambda d: d["Quantity"].isna() | d["UnitPrice"].isna() | d["InvoiceDate"].isna()),
        ("missing CustomerID", lambda d: d["CustomerID"].isna() | (d["CustomerID"].str.strip() == "")),
        ("cancellations (InvoiceNo starting with C)", lambda d: d["InvoiceNo"].str.upper().str.startswith("C")),
        ("Quantity <= 0", lambda d: d["Quantity"] <= 0),
        ("UnitPrice <= 0", lambda d: d["UnitPrice"] <= 0),
        ("non-product StockCode", lambda d: ~d["StockCode"].str.match(PRODUCT_CODE)),
    ]
    for rule, drop in rules:
        mask = drop(df).fillna(False).astype(bool)
        report.removed[rule] = int(mask.sum())
        if rule.startswith("cancellations"):
            report.cancellations = _cancellation_lines(df.loc[mask])
        df = df.loc[~mask]
    history = pd.DataFrame({
        "order_id": df["InvoiceNo"].str.strip(),
        "user_id": df["CustomerID"].str.strip().str.removesuffix(".0"),
        "item_id": df["StockCode"].str.strip(),
        "description": df["Description"].fillna("").str.strip(),
        "quantity": df["Quantity"].astype("int64"),
        "price": df["UnitPrice"].astype("float64"),
        "timestamp": df["InvoiceDate"],
        "country": df["Country"].fillna(""),
    })
    history["quantity"], report.capped[OUTLIER_RULE] = cap_quantity_outliers(history)
    return history.sort_values("timestamp", kind="stable").reset_index(drop=True), report


def _cancellation_lines(cancelled: pd.DataFrame) -> pd.DataFrame:
    product = cancelled["StockCode"].str.match(PRODUCT_CODE).fillna(False).astype(bool)
    lines = cancelled[product & (cancelled["Quantity"] < 0)]
    return pd.DataFrame({"user_id": lines["CustomerID"].str.strip().str.removesuffix(".0"),
                         "item_id": lines["StockCode"].str.strip(), "quantity": -lines["Quantity"].astype("int64"),
                         "timestamp": lines["InvoiceDate"]}).reset_index(drop=True)


def net_of_cancellations(history: pd.DataFrame, cancellations: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """``history`` less what was cancelled: each cancellation takes its quantity off the same customer's
    latest lines of the same product at or before it; lines cancelled whole are dropped. Returns the
    net history and how many cancellations found the line they cancel."""
    if cancellations is None or cancellations.empty:
        return history, 0
    quantity = history["quantity"].to_numpy().copy()
    earlier = history.reset_index(drop=True).groupby(["user_id", "item_id"]).indices  # row numbers, oldest first
    stamps = history["timestamp"].to_numpy()
    matched = 0
    for user, item, amount, ts in cancellations.sort_values("timestamp").itertuples(index=False):
        rows = [row for row in earlier.get((user, item), ()) if stamps[row] <= ts.to_datetime64() and quantity[row]]
        matched += bool(rows)
        for row in reversed(rows):
            taken = min(amount, quantity[row])
            quantity[row] -= taken
            amount -= taken
            if amount == 0:
                break
    net = history.assign(quantity=quantity)
    return net[net["quantity"] > 0].reset_index(drop=True), matched


OUTLIER_RULE = ("quantities capped as outliers (over 100 units and 50x the item's median line, or the shop's "
                "for items with fewer than 3 lines)")
MIN_LINES_FOR_MEDIAN = 3


def cap_quantity_outliers(history: pd.DataFrame, factor: float = 50.0, floor: int = 100) -> tuple[pd.Series, int]:
    """Cap absurd line quantities (e.g. 80,995 of one item) without dropping the purchase.

    An item with a line or two has no typical quantity of its own (a single line is its own
    median), so the shop's median line stands in. The row stays, so who bought what is
    untouched; only spend-based features and revenue figures see the cap.
    """
    lines = history.groupby("item_id")["quantity"]
    typical = lines.transform("median").where(lines.transform("size") >= MIN_LINES_FOR_MEDIAN,
                                              history["quantity"].median())
    bound = (typical * factor).clip(lower=floor)
    outliers = history["quantity"] > bound
    return history["quantity"].where(~outliers, bound.astype("int64")), int(outliers.sum())


def load_retail(path: str | Path) -> tuple[pd.DataFrame, CleaningReport]:
    return clean_retail(read_retail_csv(path))
