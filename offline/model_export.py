"""Turns trained models into artifact files: lists for every customer, similar items, popular lists, segments."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pandas as pd

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


def similar_items(trained: TrainedModels, k: int = SIMILAR_ITEMS) -> pd.DataFrame:
    components = {c.name: c for c in trained.hybrid.components}
    blended = sum(weight * components[name].similarity / max(float(components[name].similarity.max()), 1e-9)
                  for name, weight in SIMILARITY_BLEND.items())
    best = top_items(blended, k)
    ids = trained.data.item_ids
    return pd.DataFrame({
        "item_id": ids,
        "items": [list(ids[row]) for row in best],
        "scores": [np.round(blended[n, row], 4).tolist() for n, row in enumerate(best)],
    })


def popular_lists(trained: TrainedModels, k: int) -> dict:
    popularity = RecentPopularity(window_days=30, segments=trained.segmentation.labels.to_dict()).fit(trained.data)
    return {"all": popularity.top(k),
            "segments": {segment: popularity.top(k, segment) for segment in popularity.by_segment}}


def export_files(trained: TrainedModels, history: pd.DataFrame, k: int) -> dict[str, bytes]:
    segmentation = trained.segmentation
    profiles = {
        "k": segmentation.k,
        "silhouette": segmentation.silhouette,
        "segments": [vars(p) for p in segmentation.profiles.values()],
    }
    ranker = io.BytesIO()
    joblib.dump({"ranker": trained.hybrid.ranker, "features": trained.hybrid.feature_names}, ranker)
    return {
        "recommendations.parquet": _parquet(user_lists(trained, k)),
        "similar_items.parquet": _parquet(similar_items(trained)),
        "popular.json": json.dumps(popular_lists(trained, k)).encode(),
        "segments.parquet": _parquet(segmentation.labels.rename("segment").rename_axis("user_id").reset_index()),
        "segment_profiles.json": json.dumps(profiles, default=float).encode(),
        "customer_features.parquet": _parquet(customer_feature_table(history, trained.data).rename_axis("user_id")
                                              .reset_index()),
        "ranker.joblib": ranker.getvalue(),
    }
