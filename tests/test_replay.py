import pandas as pd

from offline.replay import CLICK_SPACING_SECONDS, catalog_records, iter_paced, platform_events, select_orders
from offline.simulator import simulate_history


def orders():
    return pd.DataFrame({
        "order_id": ["o1", "o1", "o2"],
        "user_id": ["u1", "u1", "u2"],
        "item_id": ["A", "B", "A"],
        "description": ["LAMP", "MUG", "LAMP"],
        "quantity": [2, 1, 5],
        "price": [3.0, 1.5, 2.0],
        "timestamp": pd.to_datetime(["2011-01-01 10:00", "2011-01-01 10:00", "2011-01-01 12:00"]),
        "country": ["France", "France", ""],
    })


def test_each_order_becomes_derived_clicks_then_a_purchase_in_time_order():
    events = platform_events(orders())
    kinds = [(kind, getattr(e, "type", "purchase"), getattr(e, "item_id", None)) for kind, e in events]
    assert kinds == [
        ("clicks", "view", "A"), ("clicks", "view", "B"), ("clicks", "add_to_cart", "A"),
        ("clicks", "add_to_cart", "B"), ("purchases", "purchase", None),
        ("clicks", "view", "A"), ("clicks", "add_to_cart", "A"), ("purchases", "purchase", None),
    ]
    ts = [e.ts for _, e in events]
    assert ts == sorted(ts)
    purchase = events[4][1]
    assert purchase.ts == pd.Timestamp("2011-01-01 10:00").timestamp()
    assert purchase.ts - events[3][1].ts == CLICK_SPACING_SECONDS
    assert [(l.item_id, l.quantity, l.unit_price) for l in purchase.lines] == [("A", 2, 3.0), ("B", 1, 1.5)]
    assert purchase.country == "France" and events[7][1].country is None
    assert {e.event_id for _, e in events} >= {"o1-view-0", "o1-cart-1", "o1"}
    assert len({e.event_id for _, e in events}) == len(events)


def test_catalog_has_one_record_per_item_with_median_price():
    records = {r.item_id: r for r in catalog_records(orders())}
    assert records["A"].title == "LAMP" and records["A"].price == 2.5 and records["B"].price == 1.5


def test_select_orders_keeps_whole_orders():
    history = simulate_history(n_users=20)
    chosen = select_orders(history, limit=5)
    assert chosen["order_id"].nunique() == 5
    for order_id in chosen["order_id"].unique():
        assert (chosen["order_id"] == order_id).sum() == (history["order_id"] == order_id).sum()
    late = select_orders(history, start="2024-03-01")
    assert (late["timestamp"] >= "2024-03-01").all() and len(late) < len(history)


def test_pacing_follows_event_time_divided_by_speed():
    class E:
        def __init__(self, ts):
            self.ts = ts
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds
    events = [("clicks", E(100.0)), ("clicks", E(160.0)), ("clicks", E(220.0))]
    assert list(iter_paced(events, speed=60.0, clock=lambda: now[0], sleep=sleep)) == events
    assert slept == [1.0, 1.0]
    assert list(iter_paced(events, speed=0.0)) == events
