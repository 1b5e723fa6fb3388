"""The worker's event archive: valid events as Parquet files, the trainer's record of what happened.

Layout: ``ARCHIVE_DIR/{purchases|clicks|products}/date=YYYY-MM-DD/part-{time}-{pid}-{n}.parquet``
(the date is the event's). Purchases are stored one row per order line. Rows are
buffered and written every ``flush_rows`` rows or ``flush_seconds``; on a crash
the unwritten buffer is lost from the archive (not from Kafka, which keeps the
events for its retention period).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from streams.events import ClickEvent, ProductRecord, PurchaseEvent

SCHEMAS = {
    "purchases": pa.schema([("event_id", pa.string()), ("user_id", pa.string()), ("order_id", pa.string()),
                            ("item_id", pa.string()), ("quantity", pa.int64()), ("unit_price", pa.float64()),
                            ("ts", pa.float64()), ("country", pa.string())]),
    "clicks": pa.schema([("event_id", pa.string()), ("user_id", pa.string()), ("item_id", pa.string()),
                         ("type", pa.string()), ("ts", pa.float64()), ("session_id", pa.string()),
                         ("rec_id", pa.string())]),
    "products": pa.schema([("item_id", pa.string()), ("title", pa.string()), ("category", pa.string()),
                           ("price", pa.float64()), ("ts", pa.float64())]),
}


def archive_rows(event) -> tuple[str, list[dict]]:
    """(kind, rows) for one valid event."""
    if isinstance(event, PurchaseEvent):
        return "purchases", [{"event_id": event.event_id, "user_id": event.user_id, "order_id": event.order_id,
                              "item_id": line.item_id, "quantity": line.quantity, "unit_price": line.unit_price,
                              "ts": event.ts, "country": event.country} for line in event.lines]
    if isinstance(event, ClickEvent):
        return "clicks", [{"event_id": event.event_id, "user_id": event.user_id, "item_id": event.item_id,
                           "type": event.type, "ts": event.ts, "session_id": event.session_id, "rec_id": event.rec_id}]
    if isinstance(event, ProductRecord):
        return "products", [{"item_id": event.item_id, "title": event.title, "category": event.category,
                             "price": event.price, "ts": event.ts}]
    raise TypeError(f"cannot archive {type(event).__name__}")


class EventArchive:
    def __init__(self, root: str | Path, flush_rows: int = 20_000, flush_seconds: float = 30.0):
        self.root = Path(root)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._rows: dict[str, list[dict]] = defaultdict(list)
        self._pending = 0
        self._last_flush = time.monotonic()
        self._files = 0

    def add(self, event) -> None:
        kind, rows = archive_rows(event)
        self._rows[kind].extend(rows)
        self._pending += len(rows)

    @property
    def due(self) -> bool:
        return self._pending >= self.flush_rows or (
            self._pending > 0 and time.monotonic() - self._last_flush >= self.flush_seconds)

    def flush(self) -> list[Path]:
        """Write every buffered row; return the files written."""
        written = []
        rows, self._rows, self._pending = self._rows, defaultdict(list), 0
        self._last_flush = time.monotonic()
        for kind, kind_rows in rows.items():
            by_day: dict[str, list[dict]] = defaultdict(list)
            for row in kind_rows:
                day = datetime.fromtimestamp(row["ts"] or time.time(), tz=timezone.utc).strftime("%Y-%m-%d")
                by_day[day].append(row)
            for day, day_rows in by_day.items():
                folder = self.root / kind / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                self._files += 1
                path = folder / f"part-{time.time_ns()}-{os.getpid()}-{self._files}.parquet"
                tmp = path.with_suffix(".tmp")
                pq.write_table(pa.Table.from_pylist(day_rows, schema=SCHEMAS[kind]), tmp)
                tmp.rename(path)  # readers never see half a file
                written.append(path)
        return written
