"""Loads any shop's export: interactions (CSV or Parquet) and an optional items file.

Interactions need ``user_id`` and ``item_id``. Everything else is optional, and an
optional column may be absent or empty:

* ``timestamp`` (a date, day or month first, with an optional UTC offset; digits such as
  20241231 or 20241231235959; a day number under 100,000; or Unix time in seconds,
  milliseconds, microseconds or nanoseconds); without it the history has no time, and
  lines of one user form one order;
* ``order_id`` (lines of one user at one timestamp form an order when absent);
* ``quantity`` (default 1) and ``price`` (unknown when empty), with decimal points or commas;
* ``rating`` (any numeric scale; low ratings count less) or ``weight`` (>= 0, or true/false):
  how strong a signal the line is, 1 when absent;
* ``description``, ``country``.

Items need ``item_id`` and may carry ``text``, ``category`` and ``price``. Bad rows
in a column that is present are reported with their line numbers.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np
import pandas as pd

from offline.retail_history import HISTORY_COLUMNS, HistoryError

REQUIRED = ["user_id", "item_id"]
NO_TIME = pd.Timestamp("1970-01-01")
MAX_REPORTED = 5
DELIMITERS = ",;\t|"  # the first wins a tie


def _read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else _read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise HistoryError(f"{path}: cannot read ({exc})") from None
    return table.rename(columns=_column)


def _read_csv(path: Path) -> pd.DataFrame:
    *tried, last = _encodings(path)
    for encoding in tried:
        try:
            return _read_csv_as(path, encoding)
        except UnicodeDecodeError:
            continue  # read again as the next: a file that is not UTF-8 fails only where its bytes say so
    return _read_csv_as(path, last)


def _encodings(path: Path) -> tuple[str, ...]:
    """The text encodings a CSV may be in, to try in turn: UTF-16 where the file starts with its
    byte-order mark (spreadsheets' "Unicode text"), else UTF-8, else Windows' Western encoding
    (spreadsheets' plain CSV on Windows), else Latin-1, which reads any bytes."""
    with open(path, "rb") as file:
        start = file.read(2)
    return ("utf-16",) if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else ("utf-8", "cp1252", "latin-1")


def _read_csv_as(path: Path, encoding: str) -> pd.DataFrame:
    delimiter = _delimiter(path, encoding)
    names = pd.read_csv(path, sep=delimiter, nrows=0, encoding=encoding).columns
    # Ids stay text as written ("007" is not 7), whatever case their column names take.
    ids = {name: str for name in names if _column(name) in ("user_id", "item_id", "order_id")}
    return pd.read_csv(path, sep=delimiter, dtype=ids, encoding=encoding)


def _column(name) -> str:
    """A column's name as the format spells it: `` User_ID`` is ``user_id``."""
    return str(name).strip().lower()


def _delimiter(path: Path, encoding: str) -> str:
    """The delimiter that the header line uses most: exports write commas, semicolons
    (where the comma is the decimal mark), tabs or bars."""
    header = pd.read_csv(path, header=None, nrows=1, sep="\x1f", dtype=str, encoding=encoding).iat[0, 0]  # the whole line
    return max(DELIMITERS, key=str(header).count)


def _bad_rows(path, mask: pd.Series, what: str) -> None:
    if mask.any():
        lines = ", ".join(str(n + 2) for n in mask[mask].index[:MAX_REPORTED])  # +2: header and 1-based lines
        raise HistoryError(f"{path}: {int(mask.sum())} rows with {what} (lines {lines}{', ...' if mask.sum() > MAX_REPORTED else ''})")


READABLE = re.compile(r"\.(csv|tsv|txt|parquet)(\.gz|\.bz2)?$", re.IGNORECASE)


def input_files(path: str | Path) -> list[str]:
    """``path`` itself, or the data files in the folder ``path`` and below, in name order (the
    ``_SUCCESS`` markers of Spark and Hive, and hidden files, left aside)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    files = sorted(str(file) for file in path.rglob("*") if file.is_file() and READABLE.search(file.name)
                   and not any(part.startswith((".", "_")) for part in file.relative_to(path).parts))
    if not files:
        raise HistoryError(f"{path}: no CSV or Parquet files to read")
    return files


def load_interactions_from(path: str | Path) -> pd.DataFrame:
    """The interactions of a file, or of every file in a folder (each read as ``load_interactions``
    reads it alone), in time order."""
    files = input_files(path)
    if len(files) == 1:
        return load_interactions(files[0])
    return pd.concat(map(load_interactions, files), ignore_index=True).sort_values(
        "timestamp", kind="stable").reset_index(drop=True)


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
    frame["timestamp"] = _timestamps(path, raw)
    for column, default in (("quantity", 1), ("price", 0.0)):
        values = _optional_number(path, raw, column)
        _bad_rows(path, values < 0, f"a negative {column}")
        frame[column] = values.fillna(default)
    frame["quantity"] = frame["quantity"].astype("int64").clip(lower=1)
    frame["weight"] = _weights(path, raw)
    implied_order = frame["user_id"] + "@" + frame["timestamp"].astype("int64").astype(str)
    frame["order_id"] = _optional_text(raw, "order_id").replace("", pd.NA).fillna(implied_order)
    frame["description"] = _optional_text(raw, "description")
    frame["country"] = _optional_text(raw, "country")
    return frame[HISTORY_COLUMNS + ["weight"]].astype({"user_id": str, "item_id": str, "order_id": str,
                                                     "description": str, "country": str}).sort_values("timestamp", kind="stable").reset_index(drop=True)


def _optional_text(raw: pd.DataFrame, column: str) -> pd.Series:
    if column not in raw:
        return pd.Series("", index=raw.index, dtype="string")
    return raw[column].astype("string").str.strip().fillna("")


def _optional_number(path, raw: pd.DataFrame, column: str) -> pd.Series:
    """The column as numbers, NaN where absent or empty; text that is not a number is an error."""
    if column not in raw:
        return pd.Series(np.nan, index=raw.index)
    text = raw[column].astype("string").str.strip()
    values = numbers(text)
    bad = _unread(text, values)
    if bad.any():
        lines = ", ".join(str(n + 2) for n in bad[bad].index[:MAX_REPORTED])
        raise HistoryError(f"{path}: {int(bad.sum())} rows whose {column} is not a number (lines {lines})")
    return values


DECIMAL_COMMA = r"^[+-]?\d*,\d+$"  # 2,55: the decimal mark of exports delimited by semicolons


def numbers(text: pd.Series) -> pd.Series:
    """``text`` (stripped strings) as numbers, NaN where it is none. Flags (true, false: bought,
    clicked) are 1 and 0. A column written with decimal commas and no point anywhere (2,55) is
    read as such; with a point anywhere, a comma is no decimal mark."""
    values = pd.to_numeric(text, errors="coerce")
    unread = text[_unread(text, values)]
    if not len(unread):
        return values
    flags = unread.str.lower()
    if flags.isin(["true", "false"]).all():
        values[unread.index] = (flags == "true").astype("int64")
    elif unread.str.match(DECIMAL_COMMA).all() and not text.str.contains(".", regex=False).any():
        values = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    return values


def _unread(text: pd.Series, values: pd.Series) -> pd.Series:
    """Where ``text`` holds something that ``values`` does not read as a number."""
    return values.isna() & text.notna() & (text != "")


def _timestamps(path, raw: pd.DataFrame) -> pd.Series:
    if "timestamp" not in raw or raw["timestamp"].isna().all():
        return pd.Series(NO_TIME, index=raw.index)
    ts = raw["timestamp"]
    if pd.api.types.is_numeric_dtype(ts):
        parsed = _compact_dates(ts)
        if parsed is None:
            parsed = pd.to_datetime(ts, unit=_time_unit(ts), errors="coerce")
    else:
        # Times with an offset (daylight saving changes it within one file) are taken to UTC,
        # as Unix times are; times without one are kept as written.
        parsed = pd.to_datetime(ts, errors="coerce", format="mixed", utc=True,
                                dayfirst=_day_first(ts)).dt.tz_localize(None)
    _bad_rows(path, parsed.isna(), "an unparseable timestamp")
    return parsed


DAY_MONTH = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-]\d{2,4}")  # 31/12/2024 or 12/31/2024, 31.12.24


def _day_first(times: pd.Series) -> bool:
    """Whether dates are written day first (31/12/2024): some date's first number is over 12
    and none's second is. Each date would otherwise be read on its own, month first wherever
    that makes a date, and a file of days first would be read half one way, half the other."""
    written = times.dropna()
    # Times read as such already (Parquet), or not in this form (ISO 8601: 2024-12-31), go no further.
    if pd.api.types.is_datetime64_any_dtype(written) or not DAY_MONTH.match(str(written.iat[0])):
        return False
    fields = pd.Series(written.unique()).astype(str).str.extract(DAY_MONTH).astype(float)
    return bool((fields[0] > 12).any() and not (fields[1] > 12).any())


COMPACT_DATES = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}  # digits -> format: 20241231, ...


def _compact_dates(times: pd.Series) -> pd.Series | None:
    """Dates written as digits (20241231, 202412312359 or 20241231235959), or None where the
    numbers are not all such dates of one form. As Unix times they would all fall in 1970-73
    or past the year 2500, which no export's times do."""
    written = times.dropna()
    if written.empty or written.min() <= 0:
        return None
    length = len(str(int(written.max())))
    # Told apart by size first: a column of Unix times (10, 13, 16 or 19 digits today) goes no further.
    if length not in COMPACT_DATES or len(str(int(written.min()))) != length or (written % 1 != 0).any():
        return None
    parsed = pd.to_datetime(written.astype("int64").astype(str), format=COMPACT_DATES[length], errors="coerce")
    if parsed.isna().any() or not parsed.dt.year.between(1900, 2200).all():
        return None
    return parsed.reindex(times.index)


def _time_unit(times: pd.Series) -> str:
    """Days, or seconds, milliseconds, microseconds or nanoseconds since 1970, told apart by
    size: event logs count in any of the latter, and a time in seconds stays below 1e11 until
    the year 5138. Numbers under 100,000 are day numbers (exports that count days from their
    start, spreadsheet dates): as seconds they would all fall on the first day of 1970."""
    largest = times.abs().max()
    return next((unit for unit, limit in (("D", 1e5), ("s", 1e11), ("ms", 1e14), ("us", 1e17)) if largest < limit),
                "ns")


def _weights(path, raw: pd.DataFrame) -> pd.Series:
    """``weight`` as given, or ``rating`` mapped onto 0.5 (the lowest) .. 1 (the highest); 1 without either."""
    if "weight" in raw:
        weight = _optional_number(path, raw, "weight")
        _bad_rows(path, weight < 0, "a negative weight")
        return weight.fillna(1.0)
    return rating_weight(_optional_number(path, raw, "rating"))


def rating_weight(rating: pd.Series) -> pd.Series:
    """Ratings on any scale as weights from 0.5 (the lowest) to 1 (the highest); 1 where unrated."""
    low, high = rating.min(), rating.max()
    if not high > low:
        return pd.Series(1.0, index=rating.index)
    return (0.5 + 0.5 * (rating - low) / (high - low)).fillna(1.0)


def load_items(path: str | Path) -> pd.DataFrame:
    raw = _read_table(path)
    if "item_id" not in raw.columns:
        raise HistoryError(f"{path}: missing column item_id")
    items = pd.DataFrame({"item_id": raw["item_id"].astype(str).str.strip()})
    for column in ("text", "category"):
        if column in raw:
            items[column] = raw[column].fillna("").astype(str)
    if "price" in raw:
        items["price"] = numbers(raw["price"].astype("string").str.strip()).astype("float64")
    return items.drop_duplicates("item_id", keep="last")
