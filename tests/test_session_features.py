from streams.events import ClickEvent, OrderLine, PurchaseEvent
from streams.session_features import dump_features, load_features, update_session_features

GAP = 1800.0


def click(n, kind="view", item="A", ts=1000.0, session_id=None):
    return ClickEvent(f"c{n}", "u1", item, kind, ts, session_id=session_id)


def order(n, items, ts):
    return PurchaseEvent(f"p{n}", "u1", f"o{n}", [OrderLine(i, 2, 1.0) for i in items], ts)


def apply(events, features=None):
    for event in events:
        features, _ = update_session_features(features, event, GAP, max_recent=3)
    return features


def test_first_event_opens_a_session_and_counts_types():
    f = apply([click(1, ts=1000), click(2, "add_to_cart", "B", ts=1010), click(3, "view", "C", ts=1020)])
    assert f.session_id == "u1:1000" and f.session_started == 1000 and f.last_seen == 1020
    assert f.counts == {"view": 2, "add_to_cart": 1}
    assert f.recent_items == ["A", "B", "C"] and f.cart == ["B"]


def test_inactivity_gap_starts_a_new_session_and_empties_the_cart():
    f = apply([click(1, "add_to_cart", "A", ts=1000)])
    f = apply([click(2, "view", "B", ts=1000 + GAP - 1)], f)
    assert f.session_id == "u1:1000" and f.cart == ["A"] and f.session_events == 2
    f = apply([click(3, "view", "C", ts=1000 + GAP - 1 + GAP + 1)], f)
    assert f.session_id == f"u1:{int(1000 + 2 * GAP)}" and f.cart == [] and f.session_events == 1
    assert f.counts["view"] == 2  # lifetime counts survive the new session


def test_platform_session_change_starts_a_new_session():
    f = apply([click(1, ts=1000, session_id="s1"), click(2, ts=1005, session_id="s2")])
    assert f.session_id == "u1:1005" and f.platform_session_id == "s2"


def test_recent_items_are_unique_most_recent_last_and_capped():
    f = apply([click(n, item=item, ts=1000 + n) for n, item in enumerate("ABCAD")])
    assert f.recent_items == ["C", "A", "D"]


def test_cart_removal_and_purchase():
    f = apply([click(1, "add_to_cart", "A"), click(2, "add_to_cart", "B"), click(3, "remove_from_cart", "A"),
               click(4, "add_to_cart", "C"), order(5, ["C", "D"], ts=1100)])
    assert f.cart == ["B"]
    assert f.purchased_this_session == ["C", "D"]
    assert f.units_purchased == 4 and f.counts["purchase"] == 1
    assert f.recommendation_exclusions() == {"B", "C", "D"}


def test_redelivered_event_is_not_counted_twice():
    f = apply([click(1), order(2, ["A"], ts=1001)])
    again, is_new = update_session_features(f, order(2, ["A"], ts=1001), GAP, 3)
    assert not is_new and again.counts == {"view": 1, "purchase": 1} and again.units_purchased == 2


def test_features_survive_serialisation():
    f = apply([click(1), order(2, ["A", "B"], ts=1001)])
    assert load_features(dump_features(f)) == f


def test_a_dismissed_item_is_excluded_for_the_dismiss_window_and_is_not_a_recent_item():
    days = 86400.0
    features = apply([click(1, item="A"), click(2, kind="dismiss", item="B", ts=1010.0)])
    assert "B" in features.recommendation_exclusions() and features.recent_items == ["A"]
    assert features.counts == {"view": 1, "dismiss": 1}
    features, _ = update_session_features(features, click(3, item="C", ts=1010.0 + 29 * days), GAP, 3, 30 * days)
    assert "B" in features.recommendation_exclusions()
    features, _ = update_session_features(features, click(4, item="C", ts=1011.0 + 30 * days), GAP, 3, 30 * days)
    assert "B" not in features.recommendation_exclusions() and features.dismissed == {}
