"""A release: train on a history, write a versioned artifact, and optionally publish it
(bulk-write Redis, then announce the version so running workers switch)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from offline.model_export import export_files
from offline.publish import announce_model, publish_to_redis
from offline.training import TrainedModels, train_all
from streams.model_artifacts import ArtifactStore, data_hash, new_version
from streams.settings import Settings


@dataclass
class Release:
    version: str
    trained: TrainedModels
    redis_keys: int = 0


def manifest_for(trained: TrainedModels, history_hash: str, origin: str, recs_count: int) -> dict:
    """What a version records about itself: its data, settings, validation decisions and sizes."""
    data = trained.data
    return {
        "data_hash": history_hash, "data_source": origin, "trained_at": time.time(),
        "parameters": {"components": list(trained.components), "hybrid": trained.hybrid is not None,
                       "recs_count": recs_count, "segments_k": trained.segmentation.k},
        "validation": trained.selection.as_dict(),
        "metrics": {"customers": data.n_users, "items": data.n_items, "order_lines": len(data.events),
                    "seconds": trained.seconds,
                    # three lists and a segment per customer; similar items and a catalog record per item;
                    # popular lists; segment sizes
                    "redis_keys": 4 * data.n_users + 2 * data.n_items + 2 + 2 * trained.segmentation.k},
    }


def train_and_publish(conf: Settings, history: pd.DataFrame, item_table: pd.DataFrame | None, origin: str,
                      publish: bool, step: Callable[[str], None], validation: str | None = None,
                      console: Console | None = None) -> Release:
    """Train, write the artifact, and (with ``publish``) write Redis and announce the version."""
    trained = train_all(history, item_table, progress=step, protocol=validation)
    files = export_files(trained, history, conf.recs_count)
    history_hash = data_hash(history)
    artifact = ArtifactStore(conf.artifact_dir).write(new_version(history_hash), files,
                                                      manifest_for(trained, history_hash, origin, conf.recs_count))
    step(f"artifact {artifact.path}")
    release = Release(artifact.version, trained)
    if not publish:
        step("not published; `recsys train --publish` writes Redis and tells running workers")
        return release
    with Progress(TextColumn("publishing to Redis"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=console is None) as progress:
        task = progress.add_task("publish", total=artifact.manifest["metrics"]["redis_keys"])
        release.redis_keys = publish_to_redis(artifact, conf, on_batch=lambda n: progress.update(task, completed=n))
    announce_model(artifact, conf)
    step(f"published {release.redis_keys:,} Redis keys and announced {artifact.version} on {conf.topic_model_updates}")
    return release
