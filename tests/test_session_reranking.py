"""Each kind of live context moves the offline list the way the product means it to (pure logic)."""

import asyncio

from models.base import Context
from models.offline_lists import ItemInfo, OfflineListsWithSession, RerankWeights
from streams.event_pipeline import EventPipeline
from streams.events import ClickEvent, ProductRecord, encode_event
from streams.settings import Settings
from tests.fakes import Msg, RecordingOutbox, RecordingWriter


def model(**weights):
    return OfflineListsWithSession(
        user_lists={"u1": [("A", 1.0), ("B", 0.5), ("C", 0.3)]},
        similar_items={"A": [("S", 0.9)]},
        popular=[("P", 1.0), ("Q", 0.5)],
        version="v1",
        weights=RerankWeights(**weights),
        segment_popular={"lapsing": [("L", 1.0)]},
        complements={"K": [("W", 1.0)], "A": [("B", 0.2)]},
        items={"A": ItemInfo("mugs", 2.0), "B": ItemInfo("bags", 2.0), "C": ItemInfo("mugs", 40.0),
               "K": ItemInfo("mugs", 2.5), "M": ItemInfo("mugs", 2.2), "W": ItemInfo("tea", 3.0)},
        category_popular={"mugs": [("M", 1.0), ("A", 0.8)], "bags": [("B", 1.0)]},
    )


def ranked(m, user="u1", context=(), **kwargs):
    return [item for item, _ in m.recommend(user, 10, Context(recent=list(context), **kwargs))]


def test_complements_of_the_cart_come_first_when_the_cart_weight_is_high():
    assert "W" not in ranked(model())[:3]
    assert ranked(model(cart=2.0), cart=["K"])[0] == "W"


def test_category_affinity_lifts_items_of_the_sessions_category():
    # Without affinity the offline order holds: A, B, C.
    assert ranked(model())[:3] == ["A", "B", "C"]
    # After looking at mugs, the mug C overtakes the bag B.
    lifted = ranked(model(category=1.0), context=["K"])
    assert lifted.index("C") < lifted.index("B")
    # ... and the session's main category brings its best sellers into the list.
    assert "M" in lifted


def test_price_affinity_prefers_items_near_the_sessions_price_level():
    cheap_session = ranked(model(price=1.0), context=["K", "M"])
    assert cheap_session.index("B") < cheap_session.index("C")  # B costs 2.0 like the session, C 40.0
    # Price affinity alone does not reorder without priced context.
    assert ranked(model(price=1.0))[:3] == ["A", "B", "C"]


def test_unknown_customers_get_segment_popular_items_plus_neighbours_of_what_they_touch():
    assert ranked(model(), user="new", segment="lapsing")[0] == "L"
    assert ranked(model(), user="new")[0] == "P"
    assert ranked(model(), user="new", context=["A"])[0] == "S"


def test_an_unknown_item_stands_in_with_its_category_once_the_catalog_tells_it():
    m = model()
    assert ranked(m, user="new", context=["Z"])[0] == "P"  # nothing known about Z
    m.learn_item("Z", category="bags", price=1.5)
    assert ranked(m, user="new", context=["Z"])[0] == "B"


def test_the_worker_teaches_the_model_unknown_items_from_the_redis_catalog():
    writer = RecordingWriter()
    writer.catalog["Z"] = ProductRecord("Z", "Leather bag", category="bags", price=9.0)
    pipeline = EventPipeline(Settings(recs_count=5), model(), writer, {}, RecordingOutbox(), "v1")
    asyncio.run(pipeline.handle_user_events([Msg("clicks", encode_event(ClickEvent("c1", "new", "Z", "view", 1.6e9)))]))
    assert pipeline.model.recommender.items["Z"] == ItemInfo("bags", 9.0)
    assert writer.lists["new"].items[0] == "B"  # the bags best seller, standing in for Z's neighbours


def test_each_item_is_explained_by_its_strongest_pull_and_buy_again_adds_the_orders_seen_since():
    from models.explanations import Reason

    m = model()
    m.offline_reasons = {"recs": {"u1": [Reason("similar_to", "X"), Reason("discover", "als"), Reason("trending")]},
                         "buyagain": {"u1": [Reason("bought_before", "2|2011-11-01")]}}
    m.buy_again = {"u1": [("A", 1.0)]}
    m.discover = {}
    context = Context(recent=["A"], cart=["K"], bought_times={"A": (1, 1_322_697_600.0)})  # 2011-12-01
    items = [item for item, _ in m.recommend("u1", 10, context)]
    why = dict(zip(items, m.explain("u1", items, context)))
    assert why["A"] == Reason("similar_to", "X")  # its place on the published list, with the published reason
    assert why["S"] == Reason("similar_to", "A") and why["W"] == Reason("bought_with", "K")
    assert why["P"] == Reason("trending")
    assert m.explain("u1", ["A"], context, "buyagain") == [Reason("bought_before", "3|2011-12-01")]
    newcomer = Context(segment="lapsing")
    listed = [item for item, _ in m.recommend("new", 3, newcomer)]
    assert m.explain("new", listed, newcomer)[0] == Reason("popular_in_segment", "lapsing")
