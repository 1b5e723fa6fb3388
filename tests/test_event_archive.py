import pandas as pd
import pytest

from offline.archive_loader import load_archive
from offline.retail_history import HistoryError
from streams.event_archive import EventArchive
from streams.events import ClickEvent, OrderLine, ProductRecord, PurchaseEvent

DAY1, DAY2 = 1_700_000_000.0, 1_700_000_000.0 + 86400


def test_archive_round_trips_purchases_clicks_and_products(tmp_path):
    archive = EventArchive(tmp_path, flush_rows=4)
    archive.add(ProductRecord("A", "Lamp", "lights", 3.5, DAY1))
    archive.add(ClickEvent("c1", "u1", "A", "view", DAY1))
    assert not archive.due
    archive.add(PurchaseEvent("p1", "u1", "o1", [OrderLine("A", 2, 3.5), OrderLine("B", 1, 1.0)], DAY1, "France"))
    assert archive.due
    archive.add(PurchaseEvent("p2", "u2", "o2", [OrderLine("A", 1, 3.5)], DAY2))
    written = archive.flush()
    assert not archive.due and archive.flush() == []
    assert sorted(p.parent.name for p in written if p.parts[-3] == "purchases") == ["date=2023-11-14", "date=2023-11-15"]
    # A redelivered purchase archived twice counts once.
    archive.add(PurchaseEvent("p2", "u2", "o2", [OrderLine("A", 1, 3.5)], DAY2))
    archive.flush()

    history, items = load_archive(tmp_path)
    assert list(history["order_id"]) == ["o1", "o1", "o2"]
    assert list(history["quantity"]) == [2, 1, 1] and history["country"].iat[0] == "France"
    assert history["timestamp"].iat[0] == pd.Timestamp(DAY1, unit="s")
    assert list(history["description"]) == ["Lamp", "", "Lamp"]
    assert items.set_index("item_id").loc["A", "text"] == "Lamp"
    assert not list(tmp_path.rglob("*.tmp"))


def test_empty_archive_is_a_clear_error(tmp_path):
    with pytest.raises(HistoryError, match="holds no archived purchases"):
        load_archive(tmp_path)
