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
        similar_items={"old": [("C", 0.9)]},
        popular=[("P", 1.0), ("Q", 0.5)],
        version="v1",
        segment_popular={"lapsing": [("L", 1.0)]},
    )


def test_lists_are_scored_as_they_stood_when_the_visit_began():
    features = SessionFeatures(user_id="u1", recent_items=["old", "X"], session_items=["X"], segment="lapsing")
    totals = Counter()
    score_purchase(model(), features, PurchaseEvent("p1", "u1", "o1", [OrderLine("C", 1, 1.0)], 1.0), totals)
    # Static list A, B misses C; the session list adds C as neighbour of an item from an earlier visit.
    assert totals["static:hits"] == 0 and totals["session:hits"] == 1
    # X was touched in this visit: its neighbours must not leak in (it has none here, but it is not context).
    assert features.context_before_session() == ["old"]
    rows = {row["list"]: row for row in prequential_table(totals)}
    assert rows["static"]["purchases"] == 1 and rows["session"]["hit_rate@10"] == 1.0
    assert rows["session"]["map@10"] == pytest.approx(1 / 2)  # C (0.6 x 0.9) ranks between A (1) and B (1/2)


def test_unknown_customers_fall_back_to_their_segments_popular_items():
    totals = Counter()
    newcomer = SessionFeatures(user_id="new", segment="lapsing")
    score_purchase(model(), newcomer, PurchaseEvent("p2", "new", "o2", [OrderLine("L", 1, 1.0)], 1.0), totals)
    assert totals["static:hits"] == 0 and totals["session:hits"] == 0 and totals["session+segments:hits"] == 1


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
