"""Every batch model honours the contract; each learns the simulator's planted structure."""

import numpy as np
import pandas as pd
import pytest

from models.base import ItemItemRecommender
from models.interactions import Interactions
from models.segments import CustomerSegmentation
from offline.simulator import planted_category, simulate_history
from offline.training import COMPONENT_NAMES, evaluate_all, item_catalog, make_component


@pytest.fixture(scope="module")
def data():
    history = simulate_history(n_users=150, seed=2)
    return Interactions.from_frame(history, item_catalog(history))


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_contract(name, data):
    model = make_component(name).fit(data)
    scores = model.score(np.arange(5))
    assert scores.shape == (5, data.n_items) and np.isfinite(scores).all()
    user = data.user_ids[0]
    recs = model.recommend(user, k=5, exclude={data.item_ids[0]})
    assert len(recs) <= 5 and data.item_ids[0] not in [i for i, _ in recs]
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)
    assert model.recommend("unknown-user", k=5) == []


@pytest.mark.parametrize("name", ["cooccurrence", "ease", "content", "surprise-knn"])
def test_item_item_models_find_items_of_the_same_planted_category(name, data):
    model = make_component(name).fit(data)
    assert isinstance(model, ItemItemRecommender)
    same = total = 0
    for item in data.item_ids[:30]:
        similar = model.similar_items(item, 5)
        assert item not in [i for i, _ in similar]
        same += sum(planted_category(i) == planted_category(item) for i, _ in similar)
        total += len(similar)
    assert total > 0 and same / total > 0.4  # chance is 1/8
    assert model.similar_items("no-such-item", 5) == []


def test_surprise_svd_ranks_bought_categories_above_chance(data):
    model = make_component("surprise-svd").fit(data)  # the settings the hybrid uses
    scores = model.score(np.arange(data.n_users))
    bought = data.bought.toarray() > 0
    hits = []
    for row in range(data.n_users):
        favourite = pd.Series([planted_category(i) for i in data.item_ids[bought[row]]]).mode().iat[0]
        top = np.argsort(-np.where(bought[row], -np.inf, scores[row]))[:10]
        hits.append(np.mean([planted_category(data.item_ids[j]) == favourite for j in top]))
    assert np.mean(hits) > 1.25 / 8  # chance is 1/8


def test_segmentation_names_every_customer_and_reports_the_curve(data):
    seg = CustomerSegmentation(k_range=range(3, 6)).fit(data)
    assert set(seg.silhouette) == {3, 4, 5} and seg.k == max(seg.silhouette, key=seg.silhouette.get)
    assert len(seg.labels) == data.n_users and seg.labels.nunique() == seg.k
    assert (seg.predict(seg.features) == seg.labels).all()


def test_hybrid_beats_its_best_component_on_held_out_simulated_data():
    history = simulate_history(n_users=250, orders_per_user=6, seed=4)
    report = evaluate_all(history, cut=history["timestamp"].max().normalize() - pd.Timedelta(days=20),
                          ablation=False, progress=lambda m: None)
    by_name = {row["model"]: row for row in report.rows}
    assert set(by_name) == set(COMPONENT_NAMES) | {"hybrid"}
    best_component = max(by_name[n]["ALL"]["map"] for n in COMPONENT_NAMES)
    assert by_name["hybrid"]["ALL"]["map"] >= 0.9 * best_component
    assert by_name["hybrid"]["NEW"]["map"] > by_name["popularity"]["NEW"]["map"]
