"""Every batch model honours the contract; each learns the simulator's planted structure."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.base import (CannotFit, Context, ItemItemRecommender, SparseBlock, dense_top_n, openmp_threads,
                         sparse_top_n, top_n_with_and_without)
from models.factorization import FactorBlock
import models.compiled_ranker
import models.hybrid
from models.compiled_ranker import lightgbm_relevance, relevance
from lightgbm import LGBMClassifier, LGBMRanker

from models.hybrid import (OBJECTIVES, VIEWS, Candidates, ComponentScores, RankerSample, candidates, component_ranks,
                           evidence_constraints, feature_names, fit_ranker, new_ranker, training_candidates)
from models.popularity import RecentPopularity
from models.repeat_purchase import RepeatPurchase
from models.interactions import Interactions
from models.segments import CustomerSegmentation
from offline.components import COMPONENT_NAMES, make_component
from offline.model_export import SLOT_FILES, slot_files
from offline.threads import in_forked_processes, on_every_core
from offline.simulator import planted_category, planted_preferences, simulate_history
from offline.training import item_catalog, train_all


@pytest.fixture(scope="module")
def data():
    history = simulate_history(n_users=150, seed=2)
    return Interactions.from_frame(history, item_catalog(history))


@pytest.mark.parametrize("name", COMPONENT_NAMES)
def test_contract(name, data):
    model = make_component(name).fit(data)
    rows = np.arange(5)
    block = model.block(rows)
    top = block.top_n(7)
    assert top.items.shape == top.scores.shape == (5, 7)
    valid = top.items >= 0
    assert np.isfinite(top.scores[valid]).all() and np.isneginf(top.scores[~valid]).all()
    assert (np.diff(np.where(valid, top.scores, -np.inf), axis=1)[valid[:, 1:]] <= 0).all()  # best first
    # at() agrees with the scores top_n reports.
    positions, cols = np.nonzero(valid)
    assert np.allclose(block.at(positions, top.items[positions, cols]), top.scores[positions, cols], rtol=1e-4)
    # Excluded items never appear.
    bought = data.bought[rows]
    fresh = block.top_n(7, bought)
    assert not any(item in set(bought[n].indices) for n in range(5) for item in fresh.items[n] if item >= 0)
    user = data.user_ids[0]
    recs = model.recommend(user, 5, Context(exclude={data.item_ids[0]}))
    assert len(recs) <= 5 and data.item_ids[0] not in [i for i, _ in recs]
    assert model.recommend("unknown-user", k=5) == []


@pytest.mark.parametrize("name", COMPONENT_NAMES)
@pytest.mark.parametrize("n", [3, 20])
def test_both_views_from_one_ranking_equal_the_two_rankings(name, n, data):
    model = make_component(name).fit(data)
    rows = np.arange(data.n_users)
    bought = data.bought[rows]
    block = model.block(rows)
    asked_for = []
    every, new = top_n_with_and_without(block, n, bought, lambda at: asked_for.append(at) or model.block(rows[at]))
    for got, expected in ((every, block.top_n(n)), (new, block.top_n(n, bought))):
        assert np.allclose(np.nan_to_num(got.scores, neginf=-9), np.nan_to_num(expected.scores, neginf=-9), atol=1e-6)
        # The same scores, each that of the item listed (ties may list another item of equal score).
        positions, ranks = np.nonzero(got.items >= 0)
        listed = got.items[positions, ranks]
        assert np.allclose(block.at(positions, listed), got.scores[positions, ranks], rtol=1e-4)
    positions, ranks = np.nonzero(new.items >= 0)
    assert not any(bought[p, new.items[p, r]] for p, r in zip(positions, ranks))  # nothing bought in NEW
    if n == 3:  # customers who bought many of their best six are ranked again, and only they
        assert asked_for and len(asked_for[0]) < len(rows)


@pytest.mark.parametrize("name", ["cooccurrence", "ease", "content", "surprise-knn"])
def test_item_item_models_find_items_of_the_same_planted_category(name, data):
    model = make_component(name).fit(data)
    assert isinstance(model, ItemItemRecommender) and sp.issparse(model.similarity)
    same = total = 0
    for item in data.item_ids[:30]:
        similar = model.similar_items(item, 5)
        assert item not in [i for i, _ in similar]
        same += sum(planted_category(i) == planted_category(item) for i, _ in similar)
        total += len(similar)
    assert total > 0 and same / total > 0.4  # chance is 1/8
    assert model.similar_items("no-such-item", 5) == []


@pytest.mark.parametrize("name", ["surprise-svd", "als", "customer-knn"])
def test_user_models_rank_bought_categories_above_chance(name, data):
    model = make_component(name).fit(data)
    rows = np.arange(data.n_users)
    top = model.block(rows).top_n(10, data.bought)
    bought = data.bought.toarray() > 0
    hits = []
    for row in rows:
        favourite = pd.Series([planted_category(i) for i in data.item_ids[bought[row]]]).mode().iat[0]
        hits.append(np.mean([planted_category(data.item_ids[j]) == favourite for j in top.items[row] if j >= 0]))
    assert np.mean(hits) > 1.25 / 8  # chance is 1/8


@pytest.mark.parametrize("max_cells", [40, 1_000, 8_000_000])
def test_sparse_top_n_of_rows_of_very_different_lengths_is_each_rows_best_in_order(max_cells):
    """Rows of very different lengths (strips are cut by length) keep their own order and best."""
    rng = np.random.default_rng(7)
    lengths = np.minimum((rng.pareto(0.8, 300) * 3).astype(int), 400)
    rows = np.repeat(np.arange(300), lengths)
    cols = np.concatenate([rng.choice(400, n, replace=False) for n in lengths])
    scores = sp.csr_matrix((rng.permutation(len(rows)).astype(np.float32) + 1, (rows, cols)), shape=(300, 400))
    top = sparse_top_n(scores, 7, max_cells=max_cells)
    assert lengths.max() > 50 * max(np.median(lengths), 1)  # one long row among short ones
    for row in range(300):
        stored = scores[row].toarray().ravel()
        expected = np.argsort(-stored, kind="stable")[:min(7, lengths[row])]
        assert top.items[row, :len(expected)].tolist() == expected.tolist()
        assert (top.items[row, len(expected):] == -1).all()
        assert np.array_equal(top.scores[row, :len(expected)], stored[expected])


def test_sparse_top_n_ranks_negative_zero_and_positive_scores_as_numbers():
    """Scores of either sign rank by value (a stored -0.0 as 0.0, tied by column with 0.0);
    and a block's pair look-ups read the stored scores, 0 where none is stored."""
    rng = np.random.default_rng(5)
    values = rng.choice(np.array([-3.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.25, 2.0], dtype=np.float32), (60, 80))
    present = rng.random((60, 80)) < 0.5
    rows, cols = np.nonzero(present)
    scores = sp.csr_matrix((values[rows, cols], (rows, cols)), shape=(60, 80))
    assert (np.signbit(scores.data) & (scores.data == 0)).any()  # -0.0 stays stored
    top = sparse_top_n(scores, 12, max_cells=500)
    for row in range(60):
        stored = np.flatnonzero(present[row])
        expected = stored[np.lexsort((stored, -values[row, stored]))][:12]
        assert top.items[row, :len(expected)].tolist() == expected.tolist()
        assert np.array_equal(top.scores[row, :len(expected)], values[row, expected] + np.float32(0.0))
    asked_rows, asked_cols = rng.integers(0, 60, 500), rng.integers(0, 80, 500)
    looked_up = SparseBlock(scores).at(asked_rows, asked_cols)
    assert np.array_equal(looked_up, np.where(present[asked_rows, asked_cols], values[asked_rows, asked_cols], 0.0))


@pytest.mark.parametrize("max_cells", [40, 1_000, 8_000_000])
def test_sparse_top_n_breaks_ties_by_column_whatever_rows_are_ranked_beside_a_row(max_cells):
    """Equal scores (cosines of small counts tie often) rank lowest column first, so a customer's
    list is the same whether ranked alone or in a chunk of others, stored in any order."""
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 120, 200)
    rows = np.repeat(np.arange(200), lengths)
    cols = np.concatenate([rng.choice(150, n, replace=False) for n in lengths])
    values = rng.integers(1, 4, len(rows)).astype(np.float32)  # three distinct scores: ties everywhere
    scores = sp.csr_matrix((values, (rows, cols)), shape=(200, 150))
    shuffled = scores.copy()
    for row in range(200):  # the same entries, stored in another order within each row
        lo, hi = shuffled.indptr[row], shuffled.indptr[row + 1]
        keep = rng.permutation(hi - lo) + lo
        shuffled.indices[lo:hi], shuffled.data[lo:hi] = shuffled.indices[keep], shuffled.data[keep]
    together = sparse_top_n(shuffled, 9, max_cells=max_cells)
    for row in range(200):
        stored = scores[row].toarray().ravel()
        present = np.flatnonzero(stored)
        expected = present[np.lexsort((present, -stored[present]))][:9]
        alone = sparse_top_n(scores[row], 9)
        assert together.items[row, :len(expected)].tolist() == alone.items[0, :len(expected)].tolist() \
            == expected.tolist()


@pytest.mark.parametrize("max_cells", [1, 450, 4_000_000])
def test_dense_top_n_ranked_strip_by_strip_is_each_rows_best_outside_its_exclusions(max_cells):
    rng = np.random.default_rng(3)
    scores = rng.permutation(50 * 90).reshape(50, 90).astype(np.float32)
    exclude = sp.random(50, 90, density=0.2, format="csr", random_state=4)
    top = dense_top_n(scores, 12, exclude, max_cells=max_cells)
    for row in range(50):
        allowed = np.where(exclude[row].toarray().ravel() != 0, -np.inf, scores[row])
        expected = np.argsort(-allowed, kind="stable")[:12]
        assert top.items[row].tolist() == expected.tolist()
        assert np.array_equal(top.scores[row], allowed[expected])


@pytest.mark.parametrize("first_items, with_bias", [(8, False), (8, True), (50, False), (100_000, True)])
def test_factor_top_n_scored_longest_vectors_first_equals_scoring_every_item(first_items, with_bias):
    rng = np.random.default_rng(5)
    users = rng.normal(size=(40, 6)).astype(np.float32)
    items = (rng.normal(size=(300, 6)) * rng.pareto(1.5, (300, 1))).astype(np.float32)  # a few long vectors
    bias = rng.normal(size=300).astype(np.float32) if with_bias else None
    exclude = sp.random(40, 300, density=0.05, format="csr", random_state=6)
    block = FactorBlock(users, items, bias, first_items=first_items)
    scores = users @ items.T + (bias if with_bias else 0)
    for n, excluded in ((7, None), (25, exclude)):
        top = block.top_n(n, excluded)
        allowed = np.where(excluded.toarray() != 0, -np.inf, scores) if excluded is not None else scores
        expected = np.argsort(-allowed, axis=1, kind="stable")[:, :n]
        assert (top.items == expected).all()
        assert np.allclose(top.scores, np.take_along_axis(allowed, expected, axis=1), rtol=1e-5)


def test_factor_scores_of_a_customer_do_not_depend_on_who_is_scored_beside_them():
    rng = np.random.default_rng(7)
    users = rng.normal(size=(300, 64)).astype(np.float32)
    items = rng.normal(size=(500, 64)).astype(np.float32)
    block = FactorBlock(users, items)
    together = block.top_n(20)
    for start in range(0, 300, 32):  # the export's chunks
        alone = FactorBlock(users[start:start + 32], items).top_n(20)
        assert (alone.items == together.items[start:start + 32]).all()
        assert np.array_equal(alone.scores, together.scores[start:start + 32])
    assert np.array_equal(block.at(np.arange(300), together.items[:, 0]), together.scores[:, 0])


def test_work_on_every_core_keeps_its_order_and_each_thread_to_one_openmp_thread():
    ran = list(on_every_core(lambda n: (n, openmp_threads()), range(20), threads=2))
    assert [n for n, _ in ran] == list(range(20))
    assert {threads for _, threads in ran} == {1}


def test_work_in_forked_processes_keeps_its_order_and_each_process_to_one_openmp_thread():
    ran = list(in_forked_processes(lambda n: (n, openmp_threads(), os.getpid()), range(20), processes=2))
    assert [n for n, _, _ in ran] == list(range(20))
    assert {threads for _, threads, _ in ran} == {1}
    assert os.getpid() not in {pid for _, _, pid in ran}


FORKED_WORK_UNDER_PRIVATE_STACKS_SIGTERM_HANDLER = """
import time
from offline.private_stack import _sigterm_as_exit
from offline.threads import in_forked_processes

class SlowToFinalise:
    def __del__(self):
        time.sleep(1.0)  # the pool's closing SIGTERM lands here, where an exception is dropped

with _sigterm_as_exit():
    print(len(list(in_forked_processes(lambda n: SlowToFinalise(), range(4), processes=2))))
"""


def test_forked_processes_end_when_their_pool_closes_even_under_a_private_stack():
    """``private_stack`` turns SIGTERM into an exception: a forked process that kept its handler
    would outlive the pool's SIGTERM, hang the pool's exit and hold the caller's output open."""
    script = subprocess.Popen([sys.executable, "-c", FORKED_WORK_UNDER_PRIVATE_STACKS_SIGTERM_HANDLER],
                              cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        out, err = script.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        script.communicate()
        pytest.fail("the pool's exit waited on a forked process that outlived its SIGTERM")
    assert (script.returncode, out.strip()) == (0, "4"), err


def test_customer_item_pairs_count_distinct_orders_and_are_built_once_for_threads_side_by_side(monkeypatch):
    day = pd.Timestamp("2024-01-01")
    events = pd.DataFrame({
        "user_id": ["b", "a", "b", "b", "a", "b"], "item_id": ["x", "x", "x", "y", "x", "x"],
        "order_id": ["o1", "o2", "o1", "o1", "o3", "o4"], "quantity": [1, 2, 3, 1, 1, 5],
        "price": 1.0, "timestamp": [day + pd.Timedelta(days=d) for d in (0, 1, 0, 0, 3, 5)]})
    data = Interactions.from_frame(events)
    built = []
    pairs_of = Interactions._customer_item_pairs
    # Slow enough that, unguarded, every thread would start building it.
    monkeypatch.setattr(Interactions, "_customer_item_pairs",
                        lambda self: built.append(1) or time.sleep(0.1) or pairs_of(self))
    tables = list(on_every_core(lambda _: data.pairs, range(4), threads=4))
    assert len(built) == 1 and all(table is tables[0] for table in tables)
    pairs = tables[0].set_index(["user_id", "item_id"])
    # In the order each pair first occurs; b-x: o1 twice and o4 are two orders of 9 units.
    assert list(pairs.index) == [("b", "x"), ("a", "x"), ("b", "y")]
    assert list(pairs["orders"]) == [2, 2, 1] and list(pairs["quantity"]) == [9, 3, 1]
    assert list(pairs["last"]) == [day + pd.Timedelta(days=5), day + pd.Timedelta(days=3), day]
    assert data.orders[data.user_index["b"], data.item_index["x"]] == 2


def test_item_caps_keep_dense_models_small(data):
    ease = make_component("ease", {"l2": 100.0, "max_items": 50}).fit(data)
    assert ease.weights.shape == (50, 50)
    top = ease.block(np.arange(20)).top_n(10)
    assert set(top.items[top.items >= 0]) <= set(ease.columns)


@pytest.mark.parametrize("max_pool, max_entries", [(10_000, 10_000_000), (60, 10_000_000), (60, 50)])
def test_customer_neighbours_vote_as_a_brute_force_cosine_over_the_pool(data, max_pool, max_entries):
    """Small ``max_entries`` splits the block into many joins; a small pool leaves most customers out."""
    model = make_component("customer-knn", {"neighbours": 7, "max_pool": max_pool,
                                            "max_entries": max_entries}).fit(data)
    bought = data.bought.toarray()
    distinct = bought.sum(axis=1)
    pool = np.sort(np.argsort(-distinct, kind="stable")[:max_pool])
    unit = bought / np.sqrt(distinct)[:, None]
    rows = np.arange(0, data.n_users, 3)
    alike = unit[rows] @ unit[pool].T
    alike[rows[:, None] == pool[None, :]] = 0.0  # never oneself
    expected = np.zeros((len(rows), data.n_items))
    for n, row in enumerate(alike):
        nearest = np.argsort(-row, kind="stable")[:7]
        # Ties at the 7th place may be broken either way: compare the scores of the sure ones.
        assert row[nearest[-1]] > 0
        expected[n] = row[nearest] @ bought[pool[nearest]]
    got = model.block(rows).scores.toarray()
    cut = np.array([np.sort(row)[-7] for row in alike])
    unambiguous = np.array([(row == c).sum() == 1 for row, c in zip(alike, cut)])
    assert unambiguous.sum() > len(rows) / 2
    assert np.allclose(got[unambiguous], expected[unambiguous], rtol=1e-4, atol=1e-6)
    assert set(np.nonzero(got.sum(axis=0))[0]) <= set(np.nonzero(bought[pool].sum(axis=0))[0])


def test_customer_neighbours_are_left_out_with_their_reason_past_their_customer_limit(data):
    model = make_component("customer-knn", {"neighbours": 7, "max_customers": data.n_users - 1})
    assert model.refuses(data) == f"{data.n_users:,} customers, over its limit of {data.n_users - 1:,}"
    with pytest.raises(CannotFit, match="over its limit"):
        model.fit(data)
    assert make_component("customer-knn", {"max_customers": data.n_users}).refuses(data) is None


def test_segmentation_names_every_customer_and_reports_the_curve(data):
    seg = CustomerSegmentation(k_range=range(3, 6)).fit(data)
    assert set(seg.silhouette) == {3, 4, 5} and seg.k == max(seg.silhouette, key=seg.silhouette.get)
    assert len(seg.labels) == data.n_users and seg.labels.nunique() == seg.k
    assert (seg.predict(seg.features) == seg.labels).all()


def test_customers_alike_in_every_feature_still_get_a_segment():
    from models.segments import FEATURES
    features = pd.DataFrame(1.0, index=[f"c{n}" for n in range(10)], columns=FEATURES)
    seg = CustomerSegmentation(k_range=range(3, 6)).fit_features(features)
    # K-Means finds one distinct cluster whatever k is: the silhouette is undefined, the worst.
    assert seg.silhouette == {3: -1.0, 4: -1.0, 5: -1.0} and seg.k == 3
    assert seg.labels.nunique() == 1 and (seg.predict(features) == seg.labels).all()


def test_a_segment_without_recent_buyers_gets_its_all_time_popular_items():
    day = pd.Timestamp("2024-01-01")
    events = pd.DataFrame({
        "user_id": ["active1", "active2", "gone1", "gone2", "gone1"],
        "item_id": ["new", "new", "old", "old", "older"],
        "order_id": ["o1", "o2", "o3", "o4", "o5"],
        "timestamp": [day + pd.Timedelta(days=99), day + pd.Timedelta(days=98), day, day, day + pd.Timedelta(days=1)],
        "quantity": 1, "price": 1.0,
    })
    segments = {"active1": "regular", "active2": "regular", "gone1": "lapsing", "gone2": "lapsing"}
    popularity = RecentPopularity(recent_share=0.1, segments=segments).fit(Interactions.from_frame(events))
    assert popularity.top(5, "regular")[0][0] == "new"
    # Nobody in "lapsing" bought lately: their own all-time favourites first, not the overall list.
    lapsing = popularity.top(5, "lapsing")
    assert [item for item, _ in lapsing[:2]] == ["old", "older"]


def test_segments_the_rules_name_alike_are_told_apart_by_spend():
    from models.segments import FEATURES
    rows = [(5, 3, 100)] * 20 + [(300, 3, 500)] * 5 + [(300, 3, 20)] * 5
    features = pd.DataFrame(0.0, index=[f"c{n}" for n in range(len(rows))], columns=FEATURES)
    features[["recency_days", "frequency", "monetary"]] = rows
    seg = CustomerSegmentation()
    seg.features, seg.k = features, 3
    names = {cluster: profile.name for cluster, profile in seg._name_clusters(np.array([0] * 20 + [1] * 5 + [2] * 5)).items()}
    assert names == {0: "steady regular", 1: "lapsing, higher spend", 2: "lapsing, lower spend"}


def _read_lists(files: dict[str, bytes]) -> dict[str, pd.DataFrame]:
    return {slot: pd.read_parquet(io.BytesIO(files[name])).map(lambda v: list(v) if isinstance(v, np.ndarray) else v)
            for slot, name in SLOT_FILES.items()}


@pytest.fixture(scope="module")
def trained():
    return train_all(simulate_history(n_users=300, seed=3), None, progress=lambda m: None)


def test_the_hybrid_ranks_its_discovery_list_with_a_ranker_of_its_own(trained):
    hybrid, rows = trained.hybrid, np.arange(trained.data.n_users)
    bought = trained.data.bought[rows]
    block = hybrid.block(rows)
    every, new = hybrid.top_n_views(block, rows, 10, bought)
    assert (every.items == block.top_n(10).items).all() and (new.items == block.top_n(10, bought).items).all()
    # Not its full list less bought items, which one ranking of both views would give.
    _, less_bought = top_n_with_and_without(block, 10, bought, lambda at: hybrid.block(rows[at]))
    assert (less_bought.items != new.items).any()


def test_candidate_features_agree_with_each_components_own_lists(trained):
    hybrid, rows = trained.hybrid, np.arange(40)
    scores = ComponentScores(trained.data, hybrid.components, rows, per_model=10)
    found = candidates(scores, "ALL")
    names = hybrid.feature_names
    assert found.features.shape[1] == len(names)
    ranks = component_ranks(found.features, len(hybrid.components))
    for n, (component, top) in enumerate(zip(hybrid.components, scores.tops("ALL"))):
        column = names.index(component.name)
        relative = found.features[:, names.index(f"{component.name}_relative")]
        # The customer's best item from a component scores 1 relative to itself.
        first = ranks[:, n] == 0
        assert first.any() and np.allclose(np.abs(relative[first]), 1.0, atol=1e-5), component.name
        assert np.allclose(relative[first] * np.abs(top.scores[found.positions[first], 0]),
                           found.features[first, column], rtol=1e-4)
    proposed = (ranks < 10).sum(axis=1)
    assert (found.features[:, names.index("votes")] == proposed).all() and proposed.min() >= 1
    fusion = found.features[:, names.index("rank_fusion")]
    assert np.allclose(fusion, np.where(ranks < 10, 1 / (10 + ranks), 0).sum(axis=1), rtol=1e-5)
    assert fusion[proposed == proposed.max()].mean() > fusion[proposed == 1].mean()


def test_a_ranker_sample_kept_chunk_by_chunk_learns_from_what_thinning_every_candidate_at_once_keeps(monkeypatch):
    monkeypatch.setattr(models.hybrid, "TRAINING_ROWS", 300)
    rng = np.random.default_rng(7)
    chunks = [_labelled_chunk(rng, size) for size in (400, 900, 50, 700, 1200, 300)]
    sample = RankerSample(seed=5)
    for chunk in chunks:
        sample.add(chunk)
    # At once: the same draws, one share for every candidate.
    every = Candidates.joined(chunks)
    draws = np.random.default_rng(5).random(len(every.cols))
    share = (300 - every.labels.sum()) / (~every.labels).sum()
    expected = every.subset(every.labels | (draws < share))
    learned = training_candidates(sample)
    assert np.array_equal(learned.cols, expected.cols) and np.array_equal(learned.labels, expected.labels)
    assert 250 < len(learned.cols) < 350 and learned.labels.sum() == every.labels.sum()
    held = sum(len(found.cols) for found, _ in sample.kept)
    assert held < len(every.cols) / 4  # what a sample holds stays near the rows it will learn from


def _labelled_chunk(rng: np.random.Generator, size: int) -> Candidates:
    """``size`` candidates with unique columns (to follow them) and about 5% bought."""
    cols = rng.permutation(10**6)[:size]
    return Candidates(np.zeros(size, dtype=np.int64), cols, rng.random((size, 2), dtype=np.float32),
                      rng.random(size) < 0.05)


def test_the_hybrid_ranks_by_the_mean_of_one_ranker_per_validation_period(trained):
    hybrid, rows = trained.hybrid, np.arange(trained.data.n_users)
    assert trained.selection.periods == 3 and [len(hybrid.rankers[view]) for view in ("ALL", "NEW")] == [3, 3]
    found = candidates(ComponentScores(trained.data, hybrid.components, rows, hybrid.per_model), "ALL")
    each = np.array([lightgbm_relevance(ranker, found.features) for ranker in hybrid.rankers["ALL"]])
    scored = hybrid.block(rows).at(found.positions, found.cols)
    assert np.allclose(scored, each.mean(axis=0) + 1.0, rtol=0, atol=1e-6)
    # Each period taught its ranker something of its own: no one of them gives the mean.
    assert all(np.abs(alone - each.mean(axis=0)).max() > 1e-3 for alone in each)


def test_compiled_rankers_give_lightgbms_own_scores_and_save_as_lightgbm_models(trained):
    rows = np.arange(trained.data.n_users)
    found = candidates(ComponentScores(trained.data, trained.hybrid.components, rows, per_model=20), "ALL")
    features = found.features.copy()
    features[::7, 0], features[::11, -1] = np.nan, np.inf  # missing and unbounded values take LightGBM's branches
    bought = np.random.default_rng(5).random(len(found.cols)) < 0.1
    listwise = new_ranker(objective="rank_xendcg").fit(found.features, bought,
                                                         group=np.unique(found.positions, return_counts=True)[1])
    for ranker in [listwise, *(ranker for rankers in trained.hybrid.rankers.values() for ranker in rankers)]:
        expected = lightgbm_relevance(ranker, features)
        for threads in (1, 2):
            compiled = relevance(ranker, features, threads)
            assert np.allclose(compiled, expected, rtol=0, atol=1e-12)
            # Lists rank scores as float32: the compiled trees must not reorder them.
            assert np.array_equal(compiled.astype(np.float32), expected.astype(np.float32))
        assert 0.0 < expected.min() < expected.max() < 1.0
        saved = io.BytesIO()
        joblib.dump(ranker, saved)  # the compiled code stays out of the saved ranker
        assert np.array_equal(lightgbm_relevance(joblib.load(io.BytesIO(saved.getvalue())), features), expected)
    assert relevance(ranker, features[:0]).shape == (0,)


def test_each_view_keeps_the_ranker_objective_that_scored_best_on_validation(trained):
    selection = trained.selection
    for view in VIEWS:
        scores = selection.objective_scores[view]
        assert set(scores) == set(OBJECTIVES) and scores["binary"] != scores["rank_xendcg"]  # both learned
        chosen = selection.ranker_objective[view]
        assert chosen == max(scores, key=scores.get)
        assert selection.scores["hybrid"][view] == pytest.approx(scores[chosen])
        kind = LGBMClassifier if chosen == "binary" else LGBMRanker
        assert all(type(ranker) is kind for ranker in trained.hybrid.rankers[view])
    assert trained.selection.as_dict()["ranker_objective"] == selection.ranker_objective


def test_a_listwise_ranker_learns_each_customers_list_whatever_order_their_candidates_were_found_in():
    rng = np.random.default_rng(8)
    positions = rng.permutation(np.repeat(np.arange(400), 20))  # customers' candidates found interleaved
    signal = rng.random(len(positions))
    features = np.column_stack([signal, rng.random(400)[positions]]).astype(np.float32)  # and each customer's level
    bought = signal == pd.Series(signal).groupby(positions).transform("max").to_numpy()

    def learned(order: np.ndarray):
        sample = RankerSample()
        sample.add(Candidates(positions[order], order, features[order], bought[order]))
        return fit_ranker(sample, [0, 0], objective="rank_xendcg")

    interleaved, customer_by_customer = learned(np.arange(len(positions))), learned(np.argsort(positions, kind="stable"))
    scores = relevance(interleaved, features, 1)
    assert np.array_equal(scores, relevance(customer_by_customer, features, 1))
    assert ((scores > 0) & (scores < 1)).all()
    assert bought[pd.Series(scores).groupby(positions).idxmax().to_numpy()].mean() > 0.9


def test_a_ranker_without_a_split_scores_every_candidate_alike():
    features = np.random.default_rng(3).random((200, 4), dtype=np.float32)
    labels = np.arange(200) % 5 == 0
    ranker = new_ranker().fit(np.zeros_like(features), labels)  # nothing to split on
    assert np.allclose(relevance(ranker, features, 1), 0.2, atol=1e-9)


def test_a_candidates_category_share_is_its_customers_share_of_distinct_items_in_the_items_category(data):
    planted = np.array([planted_category(item) for item in data.item_ids])
    derived = models.hybrid.item_categories(data)  # the simulator's catalog has texts only
    assert len(set(zip(planted, derived))) == len(set(planted)) == len(set(derived))
    users, cols = np.repeat(np.arange(20), 30), np.tile(np.arange(30), 20)
    shares = models.hybrid._pair_traits(data, np.arange(data.n_users), users, cols)[-1]
    bought = data.bought.toarray() > 0
    expected = [bought[u, planted == planted[c]].sum() / bought[u].sum() for u, c in zip(users, cols)]
    assert np.allclose(shares, expected) and shares.max() > 0.5
    catalog = pd.DataFrame({"category": np.where(np.arange(data.n_items) < 10, "first ten", "others")},
                           index=data.item_ids)
    assert (models.hybrid.item_categories(Interactions(data.events, data.item_ids, catalog, data.end))
            == (np.arange(data.n_items) >= 10)).all()
    bare = Interactions(data.events, data.item_ids, pd.DataFrame(index=data.item_ids), data.end)  # no text either
    assert (models.hybrid.item_categories(bare) == 0).all()
    assert (models.hybrid._pair_traits(bare, np.arange(bare.n_users), users, cols)[-1] == 1.0).all()


def test_item_texts_of_one_word_give_no_categories_rather_than_an_error():
    from models.item_categories import derive_categories
    assert (derive_categories(pd.Series(["same words"] * 30)) == "").all()
    assert (derive_categories(pd.Series(["mug"] * 20 + ["a b"] * 10)) == "").all()  # one term of 3+ letters
    assert derive_categories(pd.Series(["mug", "candle"] * 15)).nunique() == 2


def test_a_ranker_learns_no_bump_along_a_rank_or_a_shared_score_but_does_along_a_personal_score():
    components = [RecentPopularity(0.1), RepeatPurchase(90)]  # scores items alike for all / per customer
    names = feature_names(components)
    rng = np.random.default_rng(6)
    features = rng.random((20_000, len(names)), dtype=np.float32)
    for column in ("popularity_rank", "repeat_rank"):
        features[:, names.index(column)] = rng.integers(0, 21, len(features))
    # A period whose middle ranks and scores sold best: bumps along every evidence column.
    middle = sum(np.exp(-((features[:, names.index(column)] - centre) / width) ** 2)
                 for column, centre, width in (("popularity_rank", 10, 3), ("popularity", 0.5, 0.15),
                                               ("repeat", 0.5, 0.15)))
    ranker = new_ranker(0, evidence_constraints(components)).fit(features, rng.random(len(features)) < middle / 3)

    def along(column: str, values: np.ndarray) -> np.ndarray:
        grid = np.repeat(features[:50], len(values), axis=0)
        grid[:, names.index(column)] = np.tile(values, 50)
        return ranker.predict_proba(grid)[:, 1].reshape(50, len(values))

    assert (np.diff(along("popularity_rank", np.arange(21, dtype=np.float32)), axis=1) <= 1e-12).all()
    assert (np.diff(along("popularity", np.linspace(0, 1, 21, dtype=np.float32)), axis=1) >= -1e-12).all()
    personal = along("repeat", np.array([0.05, 0.5, 0.95], dtype=np.float32)).mean(axis=0)
    assert personal[1] > max(personal[0], personal[2]) * 1.2


def test_a_ranker_whose_trees_cannot_be_compiled_is_scored_by_lightgbm_with_a_warning(monkeypatch, caplog):
    features = np.random.default_rng(4).random((300, 3), dtype=np.float32)
    ranker = new_ranker().fit(features, features[:, 0] + 0.3 * features[:, 1] > 0.8)

    def no_executable_memory(_):
        raise RuntimeError("LLVM ERROR: cannot map executable memory")

    monkeypatch.setattr(models.compiled_ranker, "_compile", no_executable_memory)
    with caplog.at_level("WARNING", logger="models.compiled_ranker"):
        scored = relevance(ranker, features, 1)
    assert np.array_equal(scored, ranker.predict_proba(features)[:, 1])
    assert "cannot map executable memory" in caplog.text


def test_lists_ranked_in_several_processes_and_written_chunk_by_chunk_equal_those_ranked_at_once(trained):
    at_once = _read_lists(slot_files(trained, 20, chunk=4096, processes=1))
    by_chunks = _read_lists(slot_files(trained, 20, chunk=32, processes=2))
    for slot in SLOT_FILES:
        assert len(at_once[slot]) == trained.data.n_users and at_once[slot]["items"].map(len).max() == 20
        pd.testing.assert_frame_equal(at_once[slot], by_chunks[slot])


def test_planted_preferences_are_the_chances_the_simulated_history_was_drawn_from():
    history = simulate_history(n_users=400, seed=5)
    chances = planted_preferences(n_users=400, seed=5)
    assert np.allclose(chances.sum(axis=1), 1.0) and (chances.to_numpy() > 0).all()
    # The category each customer bought most from is one of their likeliest (two favourites tie).
    by_category = chances.T.groupby(lambda item: planted_category(item)).sum()
    bought_most = history.groupby("user_id")["item_id"].agg(lambda items: items.map(planted_category).mode()[0])
    chance_of_most = np.array([by_category.at[category, user] for user, category in bought_most.items()])
    agree = np.mean(chance_of_most >= by_category[bought_most.index].max().to_numpy() - 1e-9)
    assert agree > 0.9, agree
    # Lines were drawn from these chances: the bought items are far likelier than a uniform draw.
    drawn = chances.stack().reindex(pd.MultiIndex.from_frame(history[["user_id", "item_id"]]))
    assert np.log(drawn).mean() > np.log(1 / chances.shape[1]) + 0.5
