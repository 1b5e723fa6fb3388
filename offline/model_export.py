"""Turns trained models into artifact files: lists for every customer, similar items, popular lists, segments."""

from __future__ import annotations

import io
import json
from typing import Iterator

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from models.hybrid import feature_names
from models.item_categories import catalog_categories
from models.popularity import RecentPopularity
from models.segments import CustomerSegmentation
from offline.customer_table import customer_feature_table
from models.base import BatchRecommender, sparse_top_n
from offline.evaluation import filled
from offline.explanations import ListExplainer, per_row
from offline.threads import in_forked_processes
from offline.training import TrainedModels

SIMILAR_ITEMS = 20
# Similar items: co-bought items first, descriptions fill in for rarely bought ones.
SIMILARITY_BLEND = {"cooccurrence": 0.7, "content": 0.3}
SLOT_FILES = {"recs": "recommendations.parquet", "buyagain": "buy_again.parquet", "discover": "discover.parquet"}
SLOTS = tuple(SLOT_FILES)
WARM_UP_CUSTOMERS = 64
LIST_SCHEMA = pa.schema([("user_id", pa.string()), ("items", pa.list_(pa.string())), ("scores", pa.list_(pa.float64())),
                         ("reasons", pa.list_(pa.string())), ("evidence", pa.list_(pa.string()))])


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _slot_list_chunks(trained: TrainedModels, k: int, chunk: int = 2048,
                      processes: int | None = None) -> Iterator[dict[str, pa.Table]]:
    """Every customer's three lists, a chunk of customers at a time, in customer order: ``recs``
    (the guard's ALL model), ``buyagain`` (items they bought, by repeat score) and ``discover``
    (the guard's NEW model, never-bought items only); recs and discover are filled with popular
    items. Chunks are ranked in ``processes`` forked processes (``offline.threads``): in threads,
    the Python part of ranking and explaining would keep one core waiting on the other (at 2M
    order lines, 20 chunks took 30.6 s in two threads and 26.8 s in two processes)."""
    data = trained.data
    explainer = ListExplainer(data)
    # The first few customers alone fill the caches the others share (traits, transposed
    # similarities) before the processes fork; the other cores wait meanwhile, so they are few.
    first = min(WARM_UP_CUSTOMERS, chunk)
    edges = [0, *range(first, data.n_users, chunk), data.n_users] if data.n_users else []
    chunks = list(zip(edges, edges[1:]))

    def tables(bounds: tuple[int, int]) -> dict[str, pa.Table]:
        frames = chunk_lists(trained, explainer, np.arange(*bounds), k)
        return {slot: pa.Table.from_pandas(frame, schema=LIST_SCHEMA, preserve_index=False)
                for slot, frame in frames.items()}

    yield from map(tables, chunks[:1])
    yield from in_forked_processes(tables, chunks[1:], processes)


def slot_files(trained: TrainedModels, k: int, chunk: int = 2048, processes: int | None = None) -> dict[str, bytes]:
    """Each slot's lists as Parquet, written chunk by chunk: only the encoded lists are held,
    never every customer's lists as objects."""
    sinks = {slot: io.BytesIO() for slot in SLOTS}
    writers = {slot: pq.ParquetWriter(sink, LIST_SCHEMA) for slot, sink in sinks.items()}
    for part in _slot_list_chunks(trained, k, chunk, processes):
        for slot, table in part.items():
            writers[slot].write_table(table)
    for writer in writers.values():
        writer.close()
    return {SLOT_FILES[slot]: sink.getvalue() for slot, sink in sinks.items()}


def chunk_lists(trained: TrainedModels, explainer: ListExplainer, rows: np.ndarray, k: int) -> dict[str, pd.DataFrame]:
    """The three lists of the customers at ``rows``, one frame per slot."""
    data = trained.data
    popularity, repeat = trained.components["popularity"], trained.components["repeat"]
    recs_model, discover_model = trained.published("ALL"), trained.published("NEW")
    bought = data.bought[rows]
    popular = popularity.block(rows)
    recs_block = recs_model.block(rows)
    discover_block = recs_block if discover_model is recs_model else discover_model.block(rows)
    repeat_block = repeat.block(rows)
    recs_exclude = bought if trained.selection.recs_unbought else None
    proposed = {"recs": recs_block.top_n(k, recs_exclude), "buyagain": repeat_block.top_n(k),
                "discover": discover_block.top_n(k, bought)}
    tops = {
        "recs": filled(proposed["recs"], popular.top_n(k, recs_exclude), k=k),
        "buyagain": proposed["buyagain"],
        "discover": filled(proposed["discover"], popular.top_n(k, bought), k=k),
    }
    explained = {
        "recs": (recs_model, recs_block, recs_exclude), "buyagain": (repeat, repeat_block, None),
        "discover": (discover_model, discover_block, bought)}
    out = {}
    for slot, top in tops.items():
        model, block, exclude = explained[slot]
        valid = top.items >= 0
        listed = top.scores[valid]
        scores = np.round(np.where(np.isfinite(listed), listed, 0.0), 4)
        lists = pd.DataFrame({"user_id": data.user_ids[rows],
                              "items": per_row(data.item_ids[top.items[valid]], valid), "scores": per_row(scores, valid)})
        reasons = explainer.explain(model, block, rows, top, proposed[slot], exclude)
        out[slot] = pd.concat([lists, reasons], axis=1)
    return out


def _neighbours(similarity: sp.csr_matrix, item_ids: np.ndarray, k: int) -> pd.DataFrame:
    top = sparse_top_n(similarity, k)
    keep = (top.items >= 0) & (top.scores > 0)
    return pd.DataFrame({
        "item_id": item_ids,
        "items": [item_ids[row[ok]].tolist() for row, ok in zip(top.items, keep)],
        "scores": [np.round(row[ok], 4).tolist() for row, ok in zip(top.scores, keep)],
    })


def _scaled_similarity(components: dict[str, BatchRecommender], name: str) -> sp.csr_matrix | None:
    model = components.get(name)
    if model is None:
        return None
    similarity = model.similarity
    return similarity / max(float(similarity.max()) if similarity.nnz else 0.0, 1e-9)


def similar_items(components: dict[str, BatchRecommender], item_ids: np.ndarray,
                  k: int = SIMILAR_ITEMS) -> pd.DataFrame:
    """Each item's ``k`` most similar items: the item-item ``components`` blended (``SIMILARITY_BLEND``)."""
    n = len(item_ids)
    parts = [weight * m for name, weight in SIMILARITY_BLEND.items()
             if (m := _scaled_similarity(components, name)) is not None]
    blended = sum(parts, sp.csr_matrix((n, n), dtype=np.float32))
    return _neighbours(blended.tocsr(), item_ids, k)


def complements(components: dict[str, BatchRecommender], item_ids: np.ndarray,
                k: int = SIMILAR_ITEMS) -> pd.DataFrame:
    """Items bought together with each item (co-purchase only): what goes with a cart."""
    n = len(item_ids)
    cooccurrence = _scaled_similarity(components, "cooccurrence")
    return _neighbours(cooccurrence if cooccurrence is not None else sp.csr_matrix((n, n)), item_ids, k)


def item_table(trained: TrainedModels) -> pd.DataFrame:
    return item_table_of(trained.data.item_ids, trained.data.items)


def item_table_of(item_ids: np.ndarray, catalog: pd.DataFrame) -> pd.DataFrame:
    """item_id, category (the catalog's where it has one, else derived from descriptions), price and
    title (the item's text: its most frequent description) of ``item_ids``, from the item_id-indexed
    ``catalog`` (``offline.training.item_catalog``)."""
    items = catalog.reindex(item_ids)
    category = catalog_categories(items)
    price = items["price"] if "price" in items else pd.Series(np.nan, index=items.index)
    title = items["text"] if "text" in items else pd.Series("", index=items.index)
    return pd.DataFrame({"item_id": item_ids, "category": category.astype(str).to_numpy(),
                         "price": pd.to_numeric(price, errors="coerce").to_numpy(dtype=float),
                         "title": title.fillna("").astype(str).str.strip().to_numpy()})


def popular_lists(trained: TrainedModels, k: int, categories: pd.Series | None = None) -> dict:
    """Popular items overall, per segment, of the shortest recent stretch (``trending``, when that
    component was kept) and (given item categories) per category."""
    share = trained.components["popularity"].recent_share
    popularity = RecentPopularity(share, segments=trained.segmentation.labels.to_dict()).fit(trained.data)
    lists = {"all": popularity.top(k),
             "segments": {segment: popularity.top(k, segment) for segment in popularity.by_segment}}
    if "trending" in trained.components:
        lists["trending"] = trained.components["trending"].top(k)
    if categories is not None:
        alltime = trained.data.bought.astype(bool).sum(axis=0).A1
        lists["categories"] = category_lists(popularity.overall, alltime, trained.data.item_ids, categories, k)
    return lists


def category_lists(overall: np.ndarray, alltime_buyers: np.ndarray, item_ids: np.ndarray, categories: pd.Series,
                   k: int) -> dict[str, list[tuple[str, float]]]:
    """Each category's ``k`` most popular items: recent buyers first; a category quiet of late
    falls back on its buyers over all time."""
    score = overall + 1e-6 * alltime_buyers / max(alltime_buyers.max(initial=0), 1)
    ranked = pd.DataFrame({"item_id": item_ids, "category": categories.to_numpy(), "score": score})
    return {category: [(item, round(float(s), 6)) for item, s in part.nlargest(k, "score")[["item_id", "score"]]
                       .itertuples(index=False)]
            for category, part in ranked.groupby("category")}


def segment_profiles(segmentation: CustomerSegmentation) -> bytes:
    """segment_profiles.json: k, the silhouette of each k tried, and each segment's profile."""
    profiles = {"k": segmentation.k, "silhouette": segmentation.silhouette,
                "segments": [vars(p) for p in segmentation.profiles.values()]}
    return json.dumps(profiles, default=float).encode()


def export_files(trained: TrainedModels, history: pd.DataFrame, k: int) -> dict[str, bytes]:
    segmentation = trained.segmentation
    items = item_table(trained)
    files = {
        **slot_files(trained, k),
        "similar_items.parquet": parquet_bytes(similar_items(trained.components, trained.data.item_ids)),
        "complements.parquet": parquet_bytes(complements(trained.components, trained.data.item_ids)),
        "items.parquet": parquet_bytes(items),
        "popular.json": json.dumps(popular_lists(trained, k, items["category"])).encode(),
        "segments.parquet": parquet_bytes(segmentation.labels.rename("segment").rename_axis("user_id").reset_index()),
        "segment_profiles.json": segment_profiles(segmentation),
        "customer_features.parquet": parquet_bytes(
            customer_feature_table(history, segmentation.features).rename_axis("user_id").reset_index()),
    }
    if trained.hybrid is not None:
        files["ranker.joblib"] = ranker_file(trained.hybrid.rankers, trained.hybrid.components)
    return files


def ranker_file(rankers: dict, members: list) -> bytes:
    """ranker.joblib: the hybrid's rankers and the names of the features they read."""
    ranker = io.BytesIO()
    joblib.dump({"rankers": rankers, "features": feature_names(members)}, ranker)
    return ranker.getvalue()
