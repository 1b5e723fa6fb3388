from streams.attribution import attribute
from streams.events import ClickEvent, OrderLine, PurchaseEvent
from streams.session_features import SERVED_LISTS_KEPT, ServedList, SessionFeatures

WINDOW = 1800.0


def features(*served):
    f = SessionFeatures(user_id="u1", segment="lapsing")
    for s in served:
        f.remember_served(s)
    return f


OLD = ServedList("r-old", "v1", ["A", "B"], at=1000.0)
NEW = ServedList("r-new", "v2", ["C", "A"], at=2000.0)


def test_explicit_rec_id_wins_over_the_latest_list():
    fb = attribute(features(OLD, NEW), ClickEvent("c1", "u1", "B", "view", 2100.0, rec_id="r-old"), WINDOW)
    assert [(f.rec_id, f.rank, f.attribution, f.model_version, f.segment) for f in fb] == [("r-old", 2, "explicit", "v1", "lapsing")]
    assert fb[0].latency_seconds == 1100.0


def test_implicit_uses_the_latest_list_before_the_action_within_the_window():
    fb = attribute(features(OLD, NEW), ClickEvent("c1", "u1", "A", "add_to_cart", 2500.0), WINDOW)
    assert [(f.rec_id, f.rank, f.attribution, f.action) for f in fb] == [("r-new", 2, "implicit", "add_to_cart")]
    # Between the two lists, the older one was on screen.
    fb = attribute(features(OLD, NEW), ClickEvent("c2", "u1", "A", "view", 1500.0), WINDOW)
    assert [(f.rec_id, f.rank) for f in fb] == [("r-old", 1)]


def test_no_credit_outside_the_window_off_the_list_or_for_removals():
    assert attribute(features(NEW), ClickEvent("c1", "u1", "A", "view", 2000.0 + WINDOW + 1), WINDOW) == []
    assert attribute(features(NEW), ClickEvent("c1", "u1", "Z", "view", 2100.0), WINDOW) == []
    assert attribute(features(NEW), ClickEvent("c1", "u1", "A", "remove_from_cart", 2100.0), WINDOW) == []
    assert attribute(features(NEW), ClickEvent("c1", "u1", "A", "view", 2100.0, rec_id="unknown"), WINDOW) == []
    assert attribute(None, ClickEvent("c1", "u1", "A", "view", 2100.0), WINDOW) == []


def test_each_purchased_line_on_the_list_is_credited():
    order = PurchaseEvent("p1", "u1", "o1", [OrderLine("C", 1, 2.0), OrderLine("Z", 1, 1.0), OrderLine("A", 3, 1.0)], 2600.0)
    fb = attribute(features(NEW), order, WINDOW)
    assert [(f.item_id, f.rank, f.action, f.event_id) for f in fb] == [("C", 1, "purchase", "p1:C"), ("A", 2, "purchase", "p1:A")]


def test_served_lists_are_capped():
    f = features(*(ServedList(f"r{n}", "v", ["A"], float(n)) for n in range(SERVED_LISTS_KEPT + 5)))
    assert [s.rec_id for s in f.served] == [f"r{n}" for n in range(5, SERVED_LISTS_KEPT + 5)]


def test_a_purchase_is_credited_to_the_list_that_showed_the_item_before_it_went_into_the_cart():
    # The list written after the cart addition leaves the cart item out; the one before showed it.
    before_cart = ServedList("r-before", "v1", ["A", "B"], at=1000.0)
    after_cart = ServedList("r-after", "v1", ["B", "C"], at=1010.0)
    order = PurchaseEvent("p1", "u1", "o1", [OrderLine("A", 1, 2.0)], 1100.0)
    [credit] = attribute(features(before_cart, after_cart), order, WINDOW)
    assert (credit.rec_id, credit.rank, credit.attribution) == ("r-before", 1, "implicit")
    # An explicit rec_id credits only that list.
    named = PurchaseEvent("p2", "u1", "o2", [OrderLine("A", 1, 2.0)], 1100.0, rec_id="r-after")
    assert attribute(features(before_cart, after_cart), named, WINDOW) == []
