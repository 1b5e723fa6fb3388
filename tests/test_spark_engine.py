"""The trainer's Spark engine against the local engine, on one shared local Spark session.

Counts (popularity, repeat, co-occurrence) must be those of the local engine exactly, ALS's
lists must overlap the local ALS's at equal settings, and a version trained on Spark must be
served by the API and re-ranked by a worker like any other.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.content import ContentSimilarity
from models.cooccurrence import ItemCooccurrence
from models.customer_neighbours import CustomerNeighbours
from models.ease import EASE
from models.factorization import FactorBlock, ImplicitALS
from models.hybrid import LearnedHybrid, category_codes, item_traits
from models.interactions import Interactions
from models.popularity import RecentPopularity
from models.segments import CustomerSegmentation
from offline.interactions_loader import load_interactions_from
from offline.retail_history import HistoryError
from offline.simulator import simulate_history
from offline.spark import scores
from offline.spark.trainer import NOT_ON_SPARK, components_for, item_catalog
from offline.spark.session import EngineError, executor_errors, parse_conf, start_spark, stop_spark
from offline.components import SPECS
from offline.selection import PER_MODEL
from offline.training import TrainedModels, choose_models, interactions
from fastapi.testclient import TestClient

from streams.model_artifacts import ArtifactError, ArtifactStore
from streams.settings import Settings


@pytest.fixture(scope="module")
def spark():
    session = start_spark("local[2]", {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"})
    yield session
    stop_spark(session)


@pytest.fixture(scope="module")
def shop():
    """A small shop's history, the local engine's view of it, and Spark's."""
    return simulate_history(n_users=150, n_items=90, seed=11)


@pytest.fixture(scope="module")
def both(spark, shop):
    from offline.spark.reading import from_frame

    return interactions(shop), scores.SparkHistory.of(spark, from_frame(spark, shop))


def _by_pair(frame: pd.DataFrame, data, column: str = "score") -> sp.csr_matrix:
    rows = data.rows(frame["user_id"])
    return sp.csr_matrix((frame[column].to_numpy(dtype=float), (rows, frame["col"].to_numpy())),
                         shape=(data.n_users, data.n_items))


def test_the_history_and_its_pairs_are_the_local_engines(both):
    data, history = both
    assert list(history.item_ids) == list(data.item_ids)
    assert history.n_users == data.n_users
    assert history.n_lines == len(data.events)
    pairs = history.pairs.toPandas()
    assert (_by_pair(pairs, data, "orders") != data.orders).nnz == 0
    np.testing.assert_allclose(_by_pair(pairs, data, "age_days").toarray(),
                               (data.last_age_days - data.bought).toarray(), atol=1e-6)


@pytest.mark.parametrize("share", [1.0, 0.1, 0.05])
def test_popularity_counts_are_the_local_engines(both, share):
    data, history = both
    local = RecentPopularity(share).fit(data).overall
    np.testing.assert_array_equal(scores.popularity(history, share), local)


def test_segment_popularity_is_the_local_engines(spark, both):
    data, history = both
    labels = {user: f"s{n % 3}" for n, user in enumerate(data.user_ids)}
    local = RecentPopularity(0.1, segments=labels).fit(data).by_segment
    segments = spark.createDataFrame(pd.DataFrame({"user_id": list(labels), "segment": list(labels.values())}))
    spark_side = scores.segment_popularity(history, 0.1, segments)
    assert set(spark_side) == set(local)
    for segment, vector in local.items():
        np.testing.assert_array_equal(spark_side[segment], vector)


def test_cooccurrence_neighbours_are_the_local_engines_to_the_bit(both):
    """Each item's neighbours and their Jaccard indices, counted block by block of items on the
    executors, are the local engine's exactly: a co-buyer counted once too many or too few would
    change an index."""
    data, history = both
    local = ItemCooccurrence(history_half_life_days=30.0).fit(data).similarity
    similarity = scores.cooccurrence_similarity(history).toPandas()
    assert similarity["col"].nunique() > 1  # items of several blocks
    spark_similarity = sp.csr_matrix((similarity["similarity"], (similarity["col"], similarity["other_col"])),
                                     shape=local.shape, dtype=np.float32)
    assert local.nnz > 0 and spark_similarity.nnz == local.nnz == len(similarity)
    assert (spark_similarity.astype(bool) != local.astype(bool)).nnz == 0  # the same neighbours kept
    np.testing.assert_array_equal(spark_similarity.toarray(), local.toarray())


def test_customer_neighbours_from_the_collected_pool_serve_a_slice_as_the_local_model(both):
    data, history = both
    local = CustomerNeighbours(neighbours=20, max_pool=60).fit(data)
    pool_ids, pool_bought = scores.customer_pool(history, 60)
    assert len(pool_ids) == 60 and list(pool_ids) == list(local.pool_ids)
    assert (pool_bought != local.pool_bought).nnz == 0
    on_spark = CustomerNeighbours(neighbours=20, max_pool=60).fit_pool(pool_ids, pool_bought)
    chosen = set(data.user_ids[::3])  # a bucket: pool and other customers, apart from their neighbours
    bucket = Interactions(data.events[data.events["user_id"].isin(chosen)], data.item_ids, data.items, data.end)
    served = on_spark.serving(bucket).block(np.arange(bucket.n_users)).top_n(10)
    whole = local.block(data.rows(bucket.user_ids)).top_n(10)
    np.testing.assert_array_equal(served.items, whole.items)
    np.testing.assert_array_equal(served.scores, whole.scores)


def test_content_similarity_from_the_catalog_spark_derives_is_the_local_models(both):
    data, history = both
    local = ContentSimilarity().fit(data).similarity
    catalog = item_catalog(history, None).reindex(history.item_ids)
    on_spark = ContentSimilarity().fit_items(catalog, history.buyers).similarity
    assert local.nnz > 0
    assert (on_spark != local).nnz == 0


def test_components_the_whole_history_is_too_large_for_are_left_out_with_their_reason(both):
    _, history = both
    specs, left_out = components_for(dataclasses.replace(history, n_users=400_000))
    assert "customer-knn" not in {spec.name for spec in specs}
    assert "400,000 customers" in left_out["customer-knn"]
    assert left_out["surprise-svd"] == left_out["surprise-knn"] == NOT_ON_SPARK
    specs, left_out = components_for(history)
    assert {"customer-knn", "content", "cooccurrence"} <= {spec.name for spec in specs}
    assert "customer-knn" not in left_out


def test_ease_learns_from_the_purchase_gram_spark_sums_what_it_learns_locally(both):
    data, history = both
    local = EASE(l2=200.0, max_items=50).fit(data)
    columns = EASE(max_items=50).columns_of(scores.item_counts(history, history.pairs))
    np.testing.assert_array_equal(columns, local.columns)
    gram = scores.purchase_gram(history, columns)
    bought = data.bought[:, columns]
    np.testing.assert_array_equal(gram, (bought.T @ bought).toarray())
    on_spark = EASE(l2=200.0, max_items=50).fit_gram(gram, columns, data.n_items)
    np.testing.assert_array_equal(on_spark.weights, local.weights)


def test_als_top10_overlaps_the_local_als_at_equal_settings(both):
    data, history = both
    settings = {"factors": 16, "regularization": 0.05, "iterations": 10}
    local = ImplicitALS(**settings).fit(data).block(np.arange(data.n_users)).top_n(10)
    item_factors, user_factors = scores.als(history, **settings)
    factors = user_factors.toPandas().set_index("user_id")["features"].reindex(data.user_ids)
    on_spark = FactorBlock(np.vstack(factors.to_numpy()), item_factors).top_n(10)
    overlap = [len(set(mine[mine >= 0]) & set(theirs[theirs >= 0])) / 10
               for mine, theirs in zip(on_spark.items, local.items)]
    assert np.mean(overlap) >= 0.7


def test_each_bucket_of_customers_gets_the_lists_the_local_export_gives_them(spark, both):
    """The hybrid, ALS and every fill-in and reason, customer by customer, scored bucket by bucket."""
    from offline.model_export import SLOT_FILES, slot_files
    from offline.spark.customer_lists import ShopModels, customer_lists, slot_table
    from offline.spark.trainer import HYBRID_MEMBERS, SPARK_COMPONENTS

    data, history = both
    choice = choose_models(data, lambda message: None, None, SPARK_COMPONENTS, HYBRID_MEMBERS)
    selection = choice.selection
    assert choice.rankers is not None
    selection.published = {"ALL": "hybrid", "NEW": "als"}
    components = {name: SPECS[name].build(params).fit(data) for name, params in selection.params.items()}
    hybrid = LearnedHybrid([components[name] for name in choice.members], choice.rankers, PER_MODEL, data)
    local = slot_files(TrainedModels(data, None, selection, components, hybrid), 20, processes=1)
    traits = item_traits(np.asarray(data.bought.sum(axis=0)).ravel(), np.asarray((data.orders > 1).sum(axis=0)).ravel(),
                         data.n_users, category_codes(data.items, data.item_ids))
    shop = ShopModels(components, choice.members, choice.rankers, selection, data.item_ids, data.items, data.end,
                      traits)
    factors = pd.DataFrame({"user_id": data.user_ids, "features": list(components["als"].user_factors)})
    lists = customer_lists(history, shop, 20, spark.createDataFrame(factors, "user_id string, features array<float>"))
    for slot, name in SLOT_FILES.items():
        expected = pd.read_parquet(io.BytesIO(local[name])).set_index("user_id").sort_index()
        found = slot_table(lists, slot).toPandas().set_index("user_id").sort_index()
        assert list(found.index) == list(expected.index)
        for column in ("items", "reasons", "evidence"):
            assert found[column].map(list).tolist() == expected[column].map(list).tolist(), (slot, column)
        np.testing.assert_allclose(np.concatenate(found["scores"].to_numpy()),
                                   np.concatenate(expected["scores"].to_numpy()), atol=1e-4)


def test_segments_are_the_local_engines(both):
    from offline.spark.segments import segment_customers

    data, history = both
    local = CustomerSegmentation().fit(data)
    segmentation, segments, _ = segment_customers(history)
    assert segmentation.k == local.k
    spark_labels = segments.toPandas().set_index("user_id")["segment"].sort_index()
    pd.testing.assert_series_equal(spark_labels, local.labels.sort_index(), check_names=False, check_index_type=False)


def test_a_folder_of_files_is_read_with_the_local_rules(spark, tmp_path):
    from offline.spark.reading import read_interactions

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "part-1.csv").write_text("user_id;item_id;timestamp;price\nu1;a;31/12/2024 10:00;2,55\n"
                                       "u2;b;01/01/2025 11:00;1,10\n")
    pd.DataFrame({"user_id": ["u3", "u1"], "item_id": ["a", "c"], "rating": [5, 1],
                  "timestamp": pd.to_datetime(["2025-01-02", "2025-01-03"])}).to_parquet(folder / "part-2.parquet")
    (folder / "_SUCCESS").write_text("")
    local = load_interactions_from(folder)
    read = read_interactions(spark, folder).toPandas().sort_values("timestamp", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(read[local.columns], local, check_dtype=False)
    assert read["price"].tolist()[:2] == [2.55, 1.10]  # decimal commas, as the local loader reads them
    assert read["weight"].tolist()[2:] == [1.0, 0.5]


def test_the_event_archive_is_read_as_the_local_engine_reads_it(spark, tmp_path):
    from offline.archive_loader import load_archive
    from offline.spark.reading import read_archive
    from streams.event_archive import EventArchive
    from streams.events import OrderLine, ProductRecord, PurchaseEvent

    archive = EventArchive(tmp_path, flush_rows=3)
    day = 1_733_000_000.0
    archive.add(ProductRecord("A", "Old title", "mugs", 2.0, day - 10))
    archive.add(ProductRecord("A", "Tea mug", "mugs", 2.5, day))
    archive.add(PurchaseEvent("p1", "u1", "o1", [OrderLine("A", 2, 2.5), OrderLine("B", 1, 1.0)], day, "France"))
    archive.flush()
    archive.add(PurchaseEvent("p1", "u1", "o1", [OrderLine("A", 2, 2.5), OrderLine("B", 1, 1.0)], day, "France"))
    archive.add(PurchaseEvent("p2", "u2", "o2", [OrderLine("A", 1, 2.5)], day + 86400.0))
    archive.flush()
    history, items = load_archive(tmp_path)
    lines, spark_items = read_archive(spark, tmp_path)
    read = lines.toPandas().sort_values(["timestamp", "item_id"], kind="stable").reset_index(drop=True)
    expected = history.sort_values(["timestamp", "item_id"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(read[expected.columns], expected, check_dtype=False)
    assert len(read) == 3  # the redelivered order is counted once
    assert spark_items.set_index("item_id").loc["A", "text"] == "Tea mug" == items.set_index("item_id").loc["A", "text"]


def test_a_bad_line_read_on_an_executor_is_the_local_engines_one_line_error(spark, tmp_path):
    from offline.spark.reading import read_interactions

    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,quantity\nu1,a,2\nu2,b,many\n")
    with pytest.raises(HistoryError) as local:
        load_interactions_from(bad)
    with pytest.raises(HistoryError) as remote, executor_errors():
        read_interactions(spark, bad).count()
    assert str(remote.value) == str(local.value)
    assert "\n" not in str(remote.value)


def test_what_keeps_spark_from_starting_is_one_line_naming_the_fix(monkeypatch):
    with pytest.raises(EngineError, match="is not a Spark master"):
        start_spark("local[two]", {})
    with pytest.raises(EngineError, match="not spark.key=value"):
        parse_conf(["spark.executor.memory"])
    assert parse_conf(["spark.executor.memory=2g", " "]) == {"spark.executor.memory": "2g"}
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    from offline.spark.session import java_home

    with pytest.raises(EngineError, match="apt-get install openjdk-17-jre-headless"):
        java_home()


def test_an_artifact_reads_a_folder_of_parts_as_one_table_and_checks_each(tmp_path):
    store = ArtifactStore(tmp_path)
    staged = store.stage("20261207T000000Z-parts")
    (staged / "recommendations.parquet").mkdir()
    for n in range(2):
        pd.DataFrame({"user_id": [f"u{n}"], "items": [["a"]], "scores": [[1.0]]}).to_parquet(
            staged / "recommendations.parquet" / f"part-{n}.parquet")
    store.seal("20261207T000000Z-parts", {})
    artifact = store.load("latest")
    assert artifact.has("recommendations.parquet") and not artifact.has("recommendations")
    assert artifact.frame("recommendations.parquet")["user_id"].tolist() == ["u0", "u1"]
    (artifact.path / "recommendations.parquet" / "part-1.parquet").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        store.load("latest")


def _environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """The process environment with every setting of ``settings``, as a deployment would give them."""
    return {**os.environ, **{field.name.upper(): str(getattr(settings, field.name)) for field in fields(Settings)},
            **overrides}


@pytest.mark.integration
def test_recsys_train_on_a_cluster_publishes_what_the_api_serves_and_a_worker_reranks(spark, shop, stack_settings,
                                                                                      redis_client, tmp_path):
    """``recsys train --engine spark --publish`` on a local-cluster master, whose executor is a JVM and
    Python workers of its own: the code and models shipped to executors are pickled and loaded
    there, as on a real cluster."""
    from offline.publish import StaleVersion
    from offline.spark.export import publish_from_executors
    from streams import redis_keys
    from streams.api.app import create_api
    from streams.recommendation_store import read_recommendations
    from streams.topic_admin import ensure_topics
    from tests.conftest import running_worker
    from tests.test_hot_reload import wait_for_version

    settings = stack_settings
    ensure_topics(settings)
    shop[["user_id", "item_id", "order_id", "timestamp", "quantity", "price", "description"]].to_csv(
        tmp_path / "orders.csv", index=False)
    command = [sys.executable, "-m", "offline.cli", "train", "--engine", "spark", "--publish", "--interactions",
               str(tmp_path / "orders.csv")]
    with running_worker(settings, tmp_path / "worker.log"):
        done = subprocess.run(command, env=_environment(settings, SPARK_MASTER="local-cluster[1,2,1024]"),
                              capture_output=True, text=True, timeout=280, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "from the executors" in done.stdout
        version = ArtifactStore(settings.artifact_dir).resolve("latest")
        users = sorted(shop["user_id"].unique())
        for key in (redis_keys.recs, redis_keys.buy_again, redis_keys.discover):
            assert sum(redis_client.exists(key(user)) for user in users) == len(users)
        user, bought = users[0], set(shop.loc[shop["user_id"] == users[0], "item_id"])
        published = read_recommendations(redis_client, user)
        assert published.model_version == version and len(published.items) == settings.recs_count
        with TestClient(create_api(settings)) as api:
            answer = api.get(f"/recs/{user}", params={"explain": "true", "k": 20}).json()
            assert answer["model_version"] == version and answer["items"] == published.items
            assert [entry["item_id"] for entry in answer["explanations"]] == answer["items"]
            discover = api.get(f"/recs/{user}/discover", params={"k": 20}).json()
            assert len(discover["items"]) == 20 and not set(discover["items"]) & bought
            again = api.get(f"/recs/{user}/buy-again", params={"k": 20}).json()
            assert set(again["items"]) <= bought
            assert api.get(f"/similar/{next(iter(bought))}").status_code == 200
        reranked = wait_for_version(settings, redis_client, user, next(iter(bought)), version)
        assert reranked.event_ts is not None  # written by the worker, from the Spark-made version
    assert ArtifactStore(settings.artifact_dir).load(version).manifest["engine"] == "spark"
    # Readers never go backwards: once a newer version's fence is up, the executors write nothing.
    redis_client.set(redis_keys.MODEL_FENCE, "29991231T000000Z")
    redis_client.delete(redis_keys.recs(users[1]))
    with pytest.raises(StaleVersion):
        publish_from_executors(spark, ArtifactStore(settings.artifact_dir).load(version), settings)
    assert not redis_client.exists(redis_keys.recs(users[1]))


def test_a_master_spark_cannot_use_is_one_line_and_exit_2(stack_settings, tmp_path):
    (tmp_path / "orders.csv").write_text("user_id,item_id\nu1,a\n")
    command = [sys.executable, "-m", "offline.cli", "train", "--engine", "spark", "--interactions",
               str(tmp_path / "orders.csv")]
    wrong = subprocess.run(command, env=_environment(stack_settings, SPARK_MASTER="mesos://nowhere"),
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().count("\n") == 0 and "is not a Spark master" in wrong.stderr
