"""Turns trained models into artifact files: lists for every customer, similar items, popular lists, segments."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pandas as pd

from models.item_categories import derive_categories
from models.popularity import RecentPopularity
from offline.customer_table import customer_feature_table
from offline.evaluation import top_items
from offline.training import TrainedModels

SIMILAR_ITEMS = 20
# Similar items: co-bought items first, descriptions fill in for rarely bought ones.
SIMILARITY_BLEND = {"cooccurrence": 0.7, "content": 0.3}


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def user_lists(trained: TrainedModels, k: int, chunk: int = 512) -> pd.DataFrame:
    data, hybrid = trained.data, trained.hybrid
    items, scores, users = [], [], data.user_ids
    for start in range(0, len(users), chunk):
        block = hybrid.score(np.arange(start, min(start + chunk, len(users))))
        best = top_items(block, k)
        items += [list(data.item_ids[row]) for row in best]
        scores += [np.round(np.take_along_axis(block, best, axis=1)[n], 4).tolist() for n in range(len(best))]
    return pd.DataFrame({"user_id": users, "items": items, "scores": scores})


def _neighbours(similarity: np.ndarray, item_ids: np.ndarray, k: int) -> pd.DataFrame:
    best = top_items(similarity, k)
    return pd.DataFrame({
        "item_id": item_ids,
        "items": [[item_ids[j] for j in row if similarity[n, j] > 0] for n, row in enumerate(best)],
        "scores": [[round(float(similarity[n, j]), 4) for j in row if similarity[n, j] > 0] for n, row in enumerate(best)],
    })


def _scaled_similarity(trained: TrainedModels, name: str) -> np.ndarray:
    similarity = {c.name: c for c in trained.hybrid.components}[name].similarity
    return similarity / max(float(similarity.max()), 1e-9)


def similar_items(trained: TrainedModels, k: int = SIMILAR_ITEMS) -> pd.DataFrame:
    blended = sum(weight * _scaled_similarity(trained, name) for name, weight in SIMILARITY_BLEND.items())
    return _neighbours(blended, trained.data.item_ids, k)


def complements(trained: TrainedModels, k: int = SIMILAR_ITEMS) -> pd.DataFrame:
    """Items bought together with each item (co-purchase only): what goes with a cart."""
    return _neighbours(_scaled_similarity(trained, "cooccurrence"), trained.data.item_ids, k)


def item_table(trained: TrainedModels) -> pd.DataFrame:
    """item_id, category (the catalog's where it has one, else derived from descriptions) and price."""
    items = trained.data.items.reindex(trained.data.item_ids)
    category = items["category"] if "category" in items else pd.Series(np.nan, index=items.index, dtype=object)
    if category.isna().any():
        text = items["text"] if "text" in items else pd.Series("", index=items.index)
        category = category.fillna(derive_categories(text))
    price = items["price"] if "price" in items else pd.Series(np.nan, index=items.index)
    return pd.DataFrame({"item_id": trained.data.item_ids, "category": category.astype(str).to_numpy(),
                         "price": pd.to_numeric(price, errors="coerce").to_numpy(dtype=float)})


def popular_lists(trained: TrainedModels, k: int, categories: pd.Series | None = None) -> dict:
    """Popular items overall, per segment and (given item categories) per category."""
    popularity = RecentPopularity(window_days=30, segments=trained.segmentation.labels.to_dict()).fit(trained.data)
    lists = {"all": popularity.top(k),
             "segments": {segment: popularity.top(k, segment) for segment in popularity.by_segment}}
    if categories is not None:
        # Recent buyers first; a category quiet of late falls back on its buyers over all time.
        alltime = trained.data.bought.astype(bool).sum(axis=0).A1
        score = popularity.overall + 1e-6 * alltime / max(alltime.max(), 1)
        ranked = pd.DataFrame({"item_id": trained.data.item_ids, "category": categories.to_numpy(), "score": score})
        lists["categories"] = {
            category: [(item, round(float(s), 6)) for item, s in part.nlargest(k, "score")[["item_id", "score"]]
                       .itertuples(index=False)]
            for category, part in ranked.groupby("category")}
    return lists


def export_files(trained: TrainedModels, history: pd.DataFrame, k: int) -> dict[str, bytes]:
    segmentation = trained.segmentation
    profiles = {
        "k": segmentation.k,
        "silhouette": segmentation.silhouette,
        "segments": [vars(p) for p in segmentation.profiles.values()],
    }
    ranker = io.BytesIO()
    joblib.dump({"ranker": trained.hybrid.ranker, "features": trained.hybrid.feature_names}, ranker)
    items = item_table(trained)
    return {
        "recommendations.parquet": _parquet(user_lists(trained, k)),
        "similar_items.parquet": _parquet(similar_items(trained)),
        "complements.parquet": _parquet(complements(trained)),
        "items.parquet": _parquet(items),
        "popular.json": json.dumps(popular_lists(trained, k, items["category"])).encode(),
        "segments.parquet": _parquet(segmentation.labels.rename("segment").rename_axis("user_id").reset_index()),
        "segment_profiles.json": json.dumps(profiles, default=float).encode(),
        "customer_features.parquet": _parquet(customer_feature_table(history, trained.data).rename_axis("user_id")
                                              .reset_index()),
        "ranker.joblib": ranker.getvalue(),
    }
