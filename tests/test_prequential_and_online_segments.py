from collections import Counter

import pytest

from models.offline_lists import OfflineListsWithSession
from models.online_segments import CustomerStream, OnlineSegments
from streams.events import OrderLine, PurchaseEvent
from streams.prequential import prequential_table, score_purchase
from streams.session_features import SessionFeatures


def model():
    return OfflineListsWithSession(
        user_lists={"u1": [("A", 1.0), ("B", 0.5)]},
        similar_items={"old": [("C", 0.9)], "X": [("D", 0.8)]},
        popular=[("P", 1.0), ("Q", 0.5)],
        version="v1",
        segment_popular={"lapsing": [("L", 1.0)]},
    )


GAP = 1800.0


def test_lists_are_scored_as_served_after_the_first_item_of_the_visit():
    features = SessionFeatures(user_id="u1", recent_items=["old", "X", "Y"], session_items=["X", "Y"],
                               first_item="X", last_seen=100.0, segment="lapsing")
    totals = Counter()
    order = PurchaseEvent("p1", "u1", "o1", [OrderLine("X", 1, 1.0), OrderLine("C", 1, 1.0)], 110.0)
    score_purchase(model(), features, order, totals, GAP)
    # The static list (A, B) misses C. The re-ranked list adds D (neighbour of X, weight 0.3 x 0.8)
    # and C (neighbour of "old" from an earlier visit, 0.3 x 0.7 x 0.9); Y, clicked later in the
    # visit, is not used. X itself is known and leaves the relevant set.
    assert totals["static:hits"] == 0 and totals["session:hits"] == 1
    rows = {row["list"]: row for row in prequential_table(totals) if row["customers"] == "all"}
    assert rows["static"]["purchases"] == 1 and rows["session"]["hit_rate@10"] == 1.0
    assert rows["session"]["map@10"] == pytest.approx(1 / 4)  # A, B, D, then C


def test_orders_with_nothing_left_to_predict_are_skipped():
    features = SessionFeatures(user_id="u1", first_item="X", last_seen=100.0)
    totals = Counter()
    score_purchase(model(), features, PurchaseEvent("p1", "u1", "o1", [OrderLine("X", 1, 1.0)], 110.0), totals, GAP)
    assert totals == Counter()


def test_unknown_customers_fall_back_to_their_segments_popular_items():
    totals = Counter()
    newcomer = SessionFeatures(user_id="new", segment="lapsing")
    score_purchase(model(), newcomer, PurchaseEvent("p2", "new", "o2", [OrderLine("L", 1, 1.0)], 1.0), totals, GAP)
    assert totals["static:hits"] == 0 and totals["session:hits"] == 0 and totals["session+segments:hits"] == 1
    # ... and are counted again among the customers new since training.
    rows = {(row["list"], row["customers"]): row for row in prequential_table(totals)}
    assert rows[("session+segments", "new since training")]["hit_rate@10"] == 1.0
    assert rows[("static", "new since training")]["purchases"] == 1


def test_online_segments_separate_big_and_small_buyers_and_take_offline_names():
    seg = OnlineSegments("kmeans", n_clusters=2, seed=3)
    clusters = {}
    for n in range(300):
        stream = CustomerStream()
        big = n % 2 == 0
        for day in range(8 if big else 1):
            stream.add_order(day * 86400.0, lines=30 if big else 2, units=300 if big else 2, value=900.0 if big else 5.0)
        cluster = seg.learn_predict_one(stream.features())
        seg.observe_offline(cluster, "high-value frequent" if big else "budget occasional")
        clusters.setdefault(big, Counter())[cluster] += 1
    big_cluster = clusters[True].most_common(1)[0][0]
    small_cluster = clusters[False].most_common(1)[0][0]
    assert big_cluster != small_cluster
    assert seg.name(big_cluster) == "high-value frequent" and seg.name(small_cluster) == "budget occasional"
    with pytest.raises(ValueError, match="unknown online clusterer"):
        OnlineSegments("birch")
