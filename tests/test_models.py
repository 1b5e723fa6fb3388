import pytest

from models.base import Context, Interaction
from models.cooccurrence import SessionCooccurrence
from models.popularity import RecencyWeightedPopularity
from models.session_blend import PopularityCooccurrenceBlend
from offline.simulator import planted_category, simulate_history

DAY = 86400.0


def test_popularity_decays_with_half_life():
    pop = RecencyWeightedPopularity(half_life_seconds=DAY)
    for _ in range(3):
        pop.learn_one(Interaction("u", "old", ts=0.0))
    pop.learn_one(Interaction("u", "new", ts=2 * DAY))
    # 3 interactions two half-lives ago weigh 0.75 of one today.
    assert pop.score("old") / pop.score("new") == pytest.approx(0.75)
    assert [i for i, _ in pop.recommend("x", 5)] == ["new", "old"]


def test_popularity_rescales_without_overflow_over_long_streams():
    pop = RecencyWeightedPopularity(half_life_seconds=1.0)
    pop.learn_one(Interaction("u", "a", ts=0.0))
    pop.learn_one(Interaction("u", "b", ts=10_000.0))
    assert pop.score("b") < float("inf")
    assert pop.recommend("x", 2)[0][0] == "b"


def test_popularity_respects_exclusions_and_k():
    pop = RecencyWeightedPopularity()
    for n, item in enumerate("abcde"):
        for _ in range(5 - n):
            pop.learn_one(Interaction("u", item, ts=0.0))
    assert [i for i, _ in pop.recommend("x", 2, Context(exclude={"a"}))] == ["b", "c"]
    with pytest.raises(ValueError):
        RecencyWeightedPopularity(half_life_seconds=0)


def test_cooccurrence_similarity_is_symmetric_cosine():
    cooc = SessionCooccurrence()
    cooc.learn_one(Interaction("u", "a", 0.0))
    cooc.learn_one(Interaction("u", "b", 0.0, context=["a"]))
    cooc.learn_one(Interaction("v", "b", 0.0))
    # c(a,b) = 1, n(a) = 1, n(b) = 2
    assert cooc.similarity("a", "b") == pytest.approx(1 / 2**0.5)
    assert cooc.similarity("a", "b") == cooc.similarity("b", "a")
    assert cooc.similarity("a", "zzz") == 0.0
    assert cooc.recommend("w", 3, Context(recent=["zzz"])) == []


def test_cooccurrence_prefers_neighbours_of_the_most_recent_item():
    cooc = SessionCooccurrence()
    for basket in (["tea", "cups"], ["jam", "bread"]):
        for n, item in enumerate(basket):
            cooc.learn_one(Interaction("u", item, 0.0, context=basket[:n]))
    assert [i for i, _ in cooc.recommend("w", 2, Context(recent=["jam", "tea"]))] == ["cups", "bread"]


def test_blend_learns_the_simulators_planted_categories():
    history = simulate_history(n_users=200, seed=3)
    blend = PopularityCooccurrenceBlend(half_life_seconds=30 * DAY)
    for _, order in history.groupby("order_id", sort=False):
        items = order["item_id"].tolist()
        for n, item in enumerate(items):
            blend.learn_one(Interaction(order["user_id"].iat[0], item, order["timestamp"].iat[0].timestamp(),
                                        context=items[:n]))
    hits = total = 0
    for item in history["item_id"].drop_duplicates().head(40):
        recs = blend.recommend("probe", 10, Context(recent=[item], exclude={item}))
        hits += sum(planted_category(r) == planted_category(item) for r, _ in recs)
        total += len(recs)
    # 8 categories: chance would put 1 in 8 in the probe's category.
    assert total == 400 and hits / total > 0.5
