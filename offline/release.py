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
from offline.selection import Selection
from offline.training import TrainedModels, train_all
from streams.model_artifacts import ArtifactStore, data_hash, new_version
from streams.settings import Settings


@dataclass
class Release:
    version: str
    trained: TrainedModels
    redis_keys: int = 0


def manifest_for(trained: TrainedModels, history_hash: str, origin: str, recs_count: int) -> dict:
    data = trained.data
    return version_manifest(trained.selection, ManifestFacts(
        list(trained.components), trained.hybrid is not None, trained.segmentation.k, data.n_users, data.n_items,
        len(data.events), trained.seconds), history_hash, origin, recs_count)


@dataclass
class ManifestFacts:
    """What a trained version is made of, whichever engine trained it."""

    components: list[str]
    hybrid: bool
    segments_k: int
    customers: int
    items: int
    order_lines: int
    seconds: dict[str, float]
    engine: str = "local"


def version_manifest(selection: Selection, facts: ManifestFacts, history_hash: str, origin: str,
                     recs_count: int) -> dict:
    """What a version records about itself: its data, settings, validation decisions and sizes."""
    return {
        "data_hash": history_hash, "data_source": origin, "trained_at": time.time(), "engine": facts.engine,
        "parameters": {"components": facts.components, "hybrid": facts.hybrid,
                       "recs_count": recs_count, "segments_k": facts.segments_k},
        "validation": selection.as_dict(),
        "metrics": {"customers": facts.customers, "items": facts.items, "order_lines": facts.order_lines,
                    "seconds": facts.seconds,
                    # three lists and a segment per customer; similar items and a catalog record per item;
                    # popular lists; segment sizes
                    "redis_keys": 4 * facts.customers + 2 * facts.items + 2 + 2 * facts.segments_k},
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
