"""Contract checks every streaming recommender must pass, in the manner of River's
``utils.estimator_checks``: each check in ``CHECKS`` takes a fresh model and fails with an
``AssertionError`` saying what broke, so a test suite runs them one by one for every model."""

from __future__ import annotations

from models.base import STATIC_LISTS, Context, Interaction, Recommender

SLOTS = {"buyagain", "discover"}
# A small shop: two customers' visits, each item met in the context of the previous ones.
VISITS = {"u1": ["tea", "cups", "saucers", "jam"], "u2": ["tea", "cups", "bread"], "u3": ["jam", "scones"]}


def learn_visits(model: Recommender) -> Recommender:
    ts = 0.0
    for user, items in VISITS.items():
        for n, item in enumerate(items):
            ts += 60.0
            model.learn_one(Interaction(user, item, ts, 1.0, items[:n]))
    return model


def _assert_scored(scored, k: int) -> None:
    assert isinstance(scored, list) and len(scored) <= k, scored
    assert all(isinstance(item, str) and isinstance(score, float) for item, score in scored), scored
    assert len({item for item, _ in scored}) == len(scored), f"an item listed twice: {scored}"
    scores = [score for _, score in scored]
    assert scores == sorted(scores, reverse=True), f"not best first: {scored}"


def check_names_itself(model: Recommender) -> None:
    assert isinstance(model.name, str) and model.name


def check_declares_capabilities(model: Recommender) -> None:
    assert isinstance(model.capabilities, frozenset)
    if STATIC_LISTS in model.capabilities:
        _assert_scored(learn_visits(model).static_list("u1", 3), 3)


def check_recommends_at_most_k_best_first(model: Recommender) -> None:
    learn_visits(model)
    for k in (1, 2, 5):
        _assert_scored(model.recommend("u1", k, Context(recent=["tea"])), k)


def check_answers_without_context_or_history(model: Recommender) -> None:
    learn_visits(model)
    _assert_scored(model.recommend("never-seen", 5), 5)
    _assert_scored(model.recommend("never-seen", 5, Context(recent=["never-sold"], cart=["never-sold"])), 5)


def check_honours_exclusions(model: Recommender) -> None:
    learn_visits(model)
    full = [item for item, _ in model.recommend("u1", 5, Context(recent=["tea"]))]
    kept = model.recommend("u1", 5, Context(recent=["tea"], exclude=set(full[:2])))
    assert not {item for item, _ in kept} & set(full[:2]), kept


def check_is_deterministic(model: Recommender) -> None:
    learn_visits(model)
    context = Context(recent=["tea", "cups"], cart=["cups"], segment="regular")
    assert model.recommend("u2", 5, context) == model.recommend("u2", 5, context)


def check_slot_lists_keep_their_promises(model: Recommender) -> None:
    learn_visits(model)
    bought = ["tea"]
    slots = model.slot_lists("u1", 5, Context(recent=["tea"], exclude={"cups"}, bought=bought))
    assert set(slots) <= SLOTS, slots
    for name, scored in slots.items():
        _assert_scored(scored, 5)
        assert "cups" not in {item for item, _ in scored}, (name, scored)
    assert not {item for item, _ in slots.get("discover", [])} & set(bought)


CHECKS = (check_names_itself, check_declares_capabilities, check_recommends_at_most_k_best_first,
          check_answers_without_context_or_history, check_honours_exclusions, check_is_deterministic,
          check_slot_lists_keep_their_promises)

