"""The trainer on data of other kinds: the validation protocol fits the data, a component that
cannot fit is left out with its reason, the guard ships the best model per list, and the three
lists reach Redis (real Redis and Tansu for publishing)."""

import asyncio
import io

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier

from models.base import CannotFit
from models.hybrid import OBJECTIVES
from models.offline_lists import OfflineListsWithSession
from models.popularity import RecentPopularity
from offline import selection as model_selection
from offline.components import LARGE_HISTORY, SPECS, ComponentSpec
from offline.model_export import SLOT_FILES, export_files, slot_files
from offline.release import manifest_for, train_and_publish
from offline.retail_history import HistoryError
from offline.selection import DISCOVERY_AS_RECS, Selection, guard, ranker_objectives, select_components, validate_hybrid
from offline.simulator import simulate_history
from offline.training import interactions, train_all
from offline.validation import choose_protocol, resolve_protocol, validation_split
from streams import redis_keys
from streams.event_pipeline import EventPipeline
from streams.events import OrderLine, PurchaseEvent, encode_event
from streams.model_artifacts import ArtifactStore
from streams.model_updates import load_version
from streams.recommendation_store import decode_list
from streams.settings import Settings
from tests.fakes import Msg, RecordingOutbox, RecordingWriter


def ratings_log(users=200, items=120, per_user=12, seed=3) -> pd.DataFrame:
    """Every customer-item pair once, one item per event, each customer rating in a burst of their own."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        start = pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(rng.integers(0, 700)))
        taste = rng.integers(0, 4)
        pool = np.arange(items)[np.arange(items) % 4 == taste]
        chosen = rng.choice(pool, size=min(per_user, len(pool)), replace=False)
        for n, item in enumerate(chosen):
            rows.append((f"r{user}", f"i{item}", start + pd.Timedelta(minutes=n), float(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    frame["order_id"] = frame["user_id"] + "@" + frame["timestamp"].astype("int64").astype(str)
    return frame.assign(quantity=1, price=0.0, description="", country="",
                        weight=0.5 + 0.5 * (frame["rating"] - 1) / 4)


def test_the_protocol_follows_the_data():
    shop = simulate_history(n_users=300, seed=5)
    assert choose_protocol(shop).name == "global-time"
    ratings = ratings_log()
    chosen = choose_protocol(ratings)
    assert chosen.name == "last-items" and "ratings-style" in chosen.reason
    # Ratings entered in the same second share an order id: still a ratings log, not baskets.
    bursts = ratings.assign(timestamp=ratings["timestamp"].dt.floor("2min"))
    bursts["order_id"] = bursts["user_id"] + "@" + bursts["timestamp"].astype("int64").astype(str)
    assert bursts.groupby("order_id").size().median() == 2
    assert choose_protocol(bursts).name == "last-items"
    assert choose_protocol(ratings.assign(timestamp=pd.Timestamp("1970-01-01"))).name == "random-items"
    # Customers who each shop in a stretch of their own: hold out each one's last basket.
    own_calendar = shop.copy()
    offsets = {u: pd.Timedelta(days=400 * n) for n, u in enumerate(own_calendar["user_id"].unique())}
    own_calendar["timestamp"] += own_calendar["user_id"].map(offsets)
    assert choose_protocol(own_calendar).name == "last-basket"
    assert resolve_protocol(shop, "last-basket").reason == "set by the operator"
    with pytest.raises(ValueError, match="unknown validation protocol"):
        resolve_protocol(shop, "sometimes")


def test_one_interaction_per_pair_and_no_item_text_train_with_reasons(tmp_path):
    history = ratings_log()
    trained = train_all(history, progress=lambda m: None)
    selection = trained.selection
    assert selection.protocol == "last-items"
    # No item has a text: content similarity is left out, with the reason, and training goes on.
    assert "content" not in trained.components and "text" in selection.dropped["content"]
    assert {"popularity", "repeat", "cooccurrence", "als"} <= set(trained.components)
    for view in ("ALL", "NEW"):
        assert trained.published(view) is not None and view in selection.reasons
    # Where the guard has the recs slot show the discover list (on this log the hybrid's ALL
    # list learned to skip rated items: it does not), the export never lists an item the
    # customer had, even from a model whose ALL list is mostly such items.
    assert not selection.recs_unbought
    selection.recs_unbought, selection.published = True, {"ALL": "popularity", "NEW": "popularity"}
    recs = pd.read_parquet(io.BytesIO(slot_files(trained, 10)[SLOT_FILES["recs"]]))
    had = trained.data.events.groupby("user_id")["item_id"].agg(set)
    assert len(recs) == trained.data.n_users and all(len(items) == 10 for items in recs["items"])
    assert not any(had[user] & set(items) for user, items in zip(recs["user_id"], recs["items"]))
    # The version says so, and the worker that loads it keeps its recs lists unbought.
    ArtifactStore(tmp_path).write("v1", export_files(trained, history, 10), manifest_for(trained, "h", "test", 10))
    assert load_version(Settings(artifact_dir=str(tmp_path)), "v1")[0].recs_unbought


def test_the_recs_list_shows_unbought_items_only_where_that_clearly_scores_higher():
    rng = np.random.default_rng(4)
    repeat, discovered = rng.random(400) * 0.3, rng.random(400) * 0.1
    capabilities = {"repeat": frozenset({"personal"}), "popularity": frozenset({"discovers"})}
    precisions = {"repeat": {"ALL": repeat, "NEW": discovered, DISCOVERY_AS_RECS: discovered},
                  "popularity": {"ALL": discovered, "NEW": discovered, DISCOVERY_AS_RECS: discovered / 2}}
    selection = validated(precisions)
    guard(selection, capabilities)  # repeat buying: what the customer had leads
    assert selection.published == {"ALL": "repeat", "NEW": "popularity"} and not selection.recs_unbought
    # Nothing bought before is bought again: the recs list loses slots to items the customer had.
    precisions["repeat"]["ALL"] = discovered / 4
    precisions["popularity"][DISCOVERY_AS_RECS] = discovered + 0.02 + rng.normal(0.0, 0.05, 400)
    selection = validated(precisions)
    guard(selection, capabilities)
    assert selection.recs_unbought and selection.published == {"ALL": "popularity", "NEW": "popularity"}
    assert "the recs list shows it" in selection.reasons["ALL"]


class PopularUpTo(RecentPopularity):
    """Popularity that cannot fit a history longer than ``most_lines`` order lines."""

    name = "popular-up-to"

    def __init__(self, most_lines: int):
        super().__init__()
        self.most_lines = most_lines

    def fit(self, data):
        if len(data.events) > self.most_lines:
            raise CannotFit(f"more than {self.most_lines} order lines")
        return super().fit(data)


def test_a_component_that_cannot_fit_the_whole_history_is_left_out_with_the_hybrid(monkeypatch):
    history = simulate_history(n_users=200, orders_per_user=5, seed=5)
    # It fits every validation period (each a part of the history) but not the whole history.
    spec = ComponentSpec(PopularUpTo.name, lambda: PopularUpTo(len(history) - 1), cheap=True)
    monkeypatch.setattr(model_selection, "COMPONENTS", (*model_selection.COMPONENTS, spec))
    monkeypatch.setitem(SPECS, spec.name, spec)
    steps = []
    trained = train_all(history, progress=steps.append)
    selection = trained.selection
    assert f"{spec.name} left out: it cannot fit the whole history" in "\n".join(steps)
    assert spec.name not in trained.components and "more than" in selection.dropped[spec.name]
    assert spec.name not in selection.scores and spec.name not in selection.params
    # The hybrid's rankers read every validated component's scores: it goes too, with the reason.
    assert trained.hybrid is None and spec.name in selection.dropped["hybrid"]
    for view in ("ALL", "NEW"):
        assert selection.published[view] in trained.components
        assert "the hybrid was left out" in selection.reasons[view]


def test_histories_too_small_to_validate_on_are_one_line_errors():
    shop = simulate_history(n_users=200, orders_per_user=5, seed=5)
    with pytest.raises(HistoryError, match="the history has 3 customers; training needs at least 4"):
        train_all(shop[shop["user_id"].isin(shop["user_id"].unique()[:3])], progress=lambda m: None)
    # Every customer bought once: no one has a later purchase to hold out.
    first = shop.drop_duplicates("user_id")
    with pytest.raises(HistoryError, match="leaves no customer to validate on: it needs customers with two"):
        train_all(first, progress=lambda m: None)


def test_the_same_history_trains_the_same_rankers_and_lists():
    # Work done side by side (features beside the model selection, fits in threads, the export
    # in processes) must not change a bit of what is published.
    history = simulate_history(n_users=200, orders_per_user=5, seed=5)
    runs = [train_all(history, progress=lambda m: None) for _ in range(2)]
    assert runs[0].selection.scores == runs[1].selection.scores
    assert runs[0].segmentation.labels.equals(runs[1].segmentation.labels)
    assert slot_files(runs[0], 10) == slot_files(runs[1], 10)


def validated(precisions: dict[str, dict[str, np.ndarray]]) -> Selection:
    """A selection of one validation period whose models scored these per-customer APs."""
    return Selection("global-time", "test", 400, precisions={name: [aps] for name, aps in precisions.items()},
                     scores={name: {view: float(ap.mean()) for view, ap in aps.items()}
                             for name, aps in precisions.items()})


def test_the_guard_never_ships_a_model_that_loses_to_its_own_component():
    rng = np.random.default_rng(0)
    repeat, discovery = rng.random(400) * 0.4, rng.random(400) * 0.1
    capabilities = {"repeat": frozenset({"personal"}), "popularity": frozenset({"discovers"})}
    selection = validated({"repeat": {"ALL": repeat, "NEW": np.zeros(400)},
                           "popularity": {"ALL": discovery, "NEW": discovery},
                           "hybrid": {"ALL": repeat - 0.05, "NEW": discovery - 0.01}})
    guard(selection, capabilities)
    assert selection.published == {"ALL": "repeat", "NEW": "popularity"}
    assert "beat the hybrid" in selection.reasons["ALL"] and f"{repeat.mean():.4f}" in selection.reasons["ALL"]
    # A clear lead, customer by customer, ships the hybrid.
    noise = rng.normal(0.0, 0.1, 400)
    selection = validated({"repeat": {"ALL": repeat, "NEW": np.zeros(400)},
                           "popularity": {"ALL": discovery, "NEW": discovery},
                           "hybrid": {"ALL": repeat + 0.05 + noise, "NEW": discovery + 0.03 + noise}})
    guard(selection, capabilities)
    assert selection.published == {"ALL": "hybrid", "NEW": "hybrid"}
    assert "beat every single model" in selection.reasons["NEW"]


def test_the_guard_ships_the_best_single_model_where_the_hybrids_lead_is_within_noise():
    rng = np.random.default_rng(1)
    repeat, noise = rng.random(400) * 0.4, rng.normal(0.0, 0.1, 400)
    noise -= noise.mean()  # the leads are exactly 0.002 (ALL) and 0.02 (NEW)
    selection = validated({"repeat": {"ALL": repeat, "NEW": np.zeros(400)},
                           "popularity": {"ALL": repeat / 2, "NEW": repeat / 4},
                           "hybrid": {"ALL": repeat + 0.002 + noise, "NEW": repeat / 4 + 0.02 + noise}})
    assert selection.scores["hybrid"]["ALL"] > selection.scores["repeat"]["ALL"]
    guard(selection, {"repeat": frozenset({"personal"}), "popularity": frozenset({"discovers"})})
    assert selection.published == {"ALL": "repeat", "NEW": "hybrid"}
    assert "repeat" in selection.reasons["ALL"] and "standard errors" in selection.reasons["ALL"]


def test_the_guard_ships_the_best_single_model_where_the_hybrid_lost_a_validation_period():
    rng = np.random.default_rng(2)
    trending = [rng.random(400) * 0.1 for _ in range(3)]
    # The hybrid's clear lead overall comes from the second period (a holiday); it loses the third.
    hybrid = [t + lead + rng.normal(0.0, 0.01, 400) for t, lead in zip(trending, (0.003, 0.02, -0.002))]
    selection = Selection("global-time", "test", 400, periods=3,
                          precisions={"trending": [{"ALL": t, "NEW": t} for t in trending],
                                      "hybrid": [{"ALL": t + 0.01, "NEW": h} for t, h in zip(trending, hybrid)]})
    selection.scores = {name: {view: float(np.mean([p[view].mean() for p in periods])) for view in ("ALL", "NEW")}
                        for name, periods in selection.precisions.items()}
    guard(selection, {"trending": frozenset({"discovers"})})
    assert selection.published == {"ALL": "hybrid", "NEW": "trending"}
    assert selection.scores["hybrid"]["NEW"] > selection.scores["trending"]["NEW"]
    assert "lost validation period 3" in selection.reasons["NEW"] and "standard errors" in selection.reasons["NEW"]
    # A period lost within noise (two lists that fill alike tie) is no evidence against a clear lead.
    noise = rng.normal(0.0, 0.01, 400)
    selection.precisions["hybrid"][2]["NEW"] = trending[2] - 0.0002 + noise - noise.mean()  # 0.4 standard errors
    selection.scores["hybrid"]["NEW"] = float(np.mean([p["NEW"].mean() for p in selection.precisions["hybrid"]]))
    guard(selection, {"trending": frozenset({"discovers"})})
    assert selection.published == {"ALL": "hybrid", "NEW": "hybrid"}
    assert "beat every single model" in selection.reasons["NEW"]


def test_a_single_model_ahead_of_popularity_within_noise_does_not_ship():
    rng = np.random.default_rng(3)
    popular, noise = rng.random(400) * 0.1, rng.normal(0.0, 0.05, 400)
    noise -= noise.mean()  # trending leads by exactly 0.002, a fraction of a standard error
    capabilities = {name: frozenset({"discovers"}) for name in ("popularity", "trending", "ease")}
    selection = validated({"popularity": {"ALL": popular, "NEW": popular},
                           "trending": {"ALL": popular + 0.002 + noise, "NEW": popular + 0.002 + noise},
                           "ease": {"ALL": popular / 2, "NEW": popular / 2}})
    guard(selection, capabilities)
    assert selection.published == {"ALL": "popularity", "NEW": "popularity"}
    assert selection.reasons["NEW"].endswith(f"not contending, ahead of the baseline, popularity ({popular.mean():.4f}), "
                                             f"by under 1.645 standard errors: trending ({popular.mean() + 0.002:.4f})")
    # The hybrid is held to the strongest single model, contending or not.
    selection.precisions["hybrid"] = [{view: popular + 0.001 for view in ("ALL", "NEW")}]
    selection.scores["hybrid"] = {view: float((popular + 0.001).mean()) for view in ("ALL", "NEW")}
    guard(selection, capabilities)
    assert selection.published == {"ALL": "popularity", "NEW": "popularity"}
    assert selection.reasons["NEW"].startswith("validation MAP@10, NEW: trending (") and "beat the hybrid" in selection.reasons["NEW"]
    # A clear lead over the baseline contends, and wins.
    selection = validated({"popularity": {"ALL": popular, "NEW": popular},
                           "trending": {"ALL": popular + 0.02 + noise, "NEW": popular + 0.02 + noise}})
    guard(selection, capabilities)
    assert selection.published == {"ALL": "trending", "NEW": "trending"} and "not contending" not in selection.reasons["NEW"]


def test_with_one_validation_period_the_hybrid_is_scored_out_of_fold_and_beats_chance():
    data = interactions(simulate_history(n_users=300, seed=2))
    split = validation_split(data, "global-time")
    selection = Selection("global-time", "a test", len(split.test_users))
    periods, fitted = select_components([split], selection, lambda message: None, data)
    rankers = validate_hybrid(periods, fitted, selection)
    assert set(rankers) == {"ALL", "NEW"} and selection.by_period["hybrid"] == [selection.scores["hybrid"]]
    assert [len(rankers[view]) for view in ("ALL", "NEW")] == [1, 1]  # learned on every validation customer
    for view in ("ALL", "NEW"):
        hybrid, popular = (selection.precisions[name][0][view] for name in ("hybrid", "popularity"))
        assert len(hybrid) == len(popular) > 50  # every validation customer with something to find
        # Ranked from what the components propose, it beats popular items by far.
        assert selection.scores["hybrid"][view] > 2 * selection.scores["popularity"][view], view


def test_on_a_large_history_the_rankers_learn_with_the_first_objective_only():
    assert ranker_objectives(LARGE_HISTORY) == OBJECTIVES and ranker_objectives(LARGE_HISTORY + 1) == ("binary",)
    data = interactions(simulate_history(n_users=300, seed=2))
    split = validation_split(data, "global-time")
    selection = Selection("global-time", "a test", len(split.test_users))
    periods, fitted = select_components([split], selection, lambda message: None, data)
    rankers = validate_hybrid(periods, fitted, selection, ("binary",))
    assert {view: set(scores) for view, scores in selection.objective_scores.items()} == {"ALL": {"binary"},
                                                                                          "NEW": {"binary"}}
    assert selection.ranker_objective == {"ALL": "binary", "NEW": "binary"}
    assert all(isinstance(ranker, LGBMClassifier) for view in rankers for ranker in rankers[view])


@pytest.mark.integration
def test_published_lists_fill_their_slots_and_keep_their_promises(stack_settings, redis_client):
    history = simulate_history(n_users=250, orders_per_user=5, seed=8)
    release = train_and_publish(stack_settings, history, None, "simulator", True, lambda m: None)
    manifest = ArtifactStore(stack_settings.artifact_dir).load(release.version).manifest
    validation = manifest["validation"]
    scores, published = validation["validation_map@10"], validation["published"]
    # Every model is scored on the same validation periods, and its score is their mean.
    by_period = validation["validation_map@10_by_period"]
    assert validation["periods"] == 3 and set(by_period) == set(scores)
    for name, periods in by_period.items():
        assert len(periods) == 3
        assert scores[name]["NEW"] == pytest.approx(sum(p["NEW"] for p in periods) / 3)
    # The guard's choice is the validation winner, or where that is the hybrid by no more than
    # noise, the best single model; the hybrid ships only where it wins.
    for view in ("ALL", "NEW"):
        best_single = max(s[view] for name, s in scores.items() if name != "hybrid"
                          and (view == "ALL" or name != "repeat"))  # repeat never discovers
        assert published[view] == "hybrid" or scores[published[view]][view] == best_single
        assert published[view] != "hybrid" or scores["hybrid"][view] > best_single
    bought = history.groupby("user_id")["item_id"].agg(set)
    for user in list(bought.index[:40]):
        recs = decode_list(redis_client.get(redis_keys.recs(user)))
        again = decode_list(redis_client.get(redis_keys.buy_again(user)))
        discover = decode_list(redis_client.get(redis_keys.discover(user)))
        assert len(recs.items) == stack_settings.recs_count
        assert len(discover.items) == stack_settings.recs_count and not set(discover.items) & bought[user]
        assert again.items and set(again.items) <= bought[user]


def test_the_worker_rewrites_buy_again_and_discover_lists():
    model = OfflineListsWithSession(
        user_lists={"u1": [("A", 1.0), ("B", 0.5)]}, similar_items={"D": [("E", 1.0)]},
        popular=[("P", 1.0), ("Q", 0.5), ("A", 0.4)], version="v1",
        buy_again={"u1": [("A", 3.0), ("B", 1.0)]}, discover={"u1": [("C", 0.9), ("D", 0.8)]})
    pipeline = EventPipeline(Settings(recs_count=4), model, RecordingWriter(), {}, RecordingOutbox(), "v1")
    order = PurchaseEvent("p1", "u1", "o1", [OrderLine("D", 1, 2.0)], 1_600_000_000.0)
    asyncio.run(pipeline.handle_user_events([Msg("purchases", encode_event(order))]))
    lists = pipeline.writer.slot_lists
    discover = lists[redis_keys.discover("u1")].items
    again = lists[redis_keys.buy_again("u1")].items
    # D was just bought: never in discover, nor in this session's buy-again; its neighbour E is.
    assert "E" in discover and not {"A", "B", "D"} & set(discover)
    assert again == ["A", "B"]


def test_where_the_trainer_had_recs_show_unbought_items_the_worker_keeps_it_so():
    def worker(recs_unbought: bool) -> EventPipeline:
        model = OfflineListsWithSession(
            user_lists={"u1": [("C", 0.9), ("D", 0.8)]}, similar_items={"D": [("A", 1.0), ("E", 0.9)]},
            popular=[("P", 1.0), ("A", 0.5), ("Q", 0.4)], version="v1",
            buy_again={"u1": [("A", 3.0), ("B", 1.0)]}, discover={"u1": [("C", 0.9), ("D", 0.8)]},
            recs_unbought=recs_unbought)
        return EventPipeline(Settings(recs_count=4), model, RecordingWriter(), {}, RecordingOutbox(), "v1")

    order = PurchaseEvent("p1", "u1", "o1", [OrderLine("D", 1, 2.0)], 1_600_000_000.0)
    for recs_unbought in (False, True):
        pipeline = worker(recs_unbought)
        asyncio.run(pipeline.handle_user_events([Msg("purchases", encode_event(order))]))
        recs = pipeline.writer.lists["u1"].items
        # D's neighbour A was bought before: a repeat-buying shop's recs may show it, a film shop's never.
        assert ("A" in recs) is not recs_unbought and "E" in recs
        assert not recs_unbought or not {"A", "B", "D"} & set(recs)
