"""Hot swap: every worker follows the model-updates topic and loads each new version.

The topic is read outside the consumer group (no group id, from its end),
so every worker sees every announcement, not just the one owning a partition.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from models.offline_lists import OfflineListsWithSession
from streams.model_artifacts import Artifact, ArtifactError, ArtifactStore
from streams.settings import Settings

log = logging.getLogger(__name__)


class ModelUpdate(msgspec.Struct):
    model_version: str
    published_at: float | None = None


_decode_update = msgspec.json.Decoder(ModelUpdate).decode


def offline_recommender(artifact: Artifact, popular_count: int) -> OfflineListsWithSession:
    """The worker's recommender for one artifact version (hashes verified on load)."""
    lists = artifact.frame("recommendations.parquet")
    similar = artifact.frame("similar_items.parquet")
    popular = artifact.json("popular.json")
    return OfflineListsWithSession(
        user_lists={u: _pairs(items, scores) for u, items, scores in lists.itertuples(index=False)},
        similar_items={i: _pairs(items, scores) for i, items, scores in similar.itertuples(index=False)},
        popular=[(item, float(score)) for item, score in popular["all"][:popular_count]],
        version=artifact.version,
        segment_popular={name: [(item, float(score)) for item, score in entries[:popular_count]]
                         for name, entries in popular["segments"].items()},
    )


def _pairs(items, scores) -> list[tuple[str, float]]:
    return [(str(item), float(score)) for item, score in zip(items, scores)]


def load_version(settings: Settings, version: str = "latest") -> tuple[OfflineListsWithSession, dict[str, str]] | None:
    """The recommender of ``version`` and its offline segments (user_id -> name), or None."""
    try:
        artifact = ArtifactStore(settings.artifact_dir).load(version)
    except ArtifactError as exc:
        log.warning("offline model %s not loaded: %s", version, exc)
        return None
    segments = artifact.frame("segments.parquet")
    return offline_recommender(artifact, settings.recs_count), dict(zip(segments["user_id"], segments["segment"]))


async def follow_model_updates(settings: Settings, on_update: Callable[[str], Awaitable[None]],
                               start_timeout: float = 10.0) -> None:
    """Call ``on_update("latest")`` at once and again once listening (nothing published in between
    is missed), then ``on_update(version)`` for each announcement. A broker that is slow to
    answer delays following, never the worker."""
    await on_update("latest")
    backoff = 1.0
    while True:
        consumer = AIOKafkaConsumer(settings.topic_model_updates, bootstrap_servers=settings.kafka_bootstrap_servers,
                                    group_id=None, auto_offset_reset="latest")
        try:
            await asyncio.wait_for(consumer.start(), start_timeout)
            break
        except (asyncio.TimeoutError, KafkaError) as exc:
            log.warning("cannot follow %s yet (%r); retrying in %.0f s", settings.topic_model_updates, exc, backoff)
            await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
    try:
        await on_update("latest")
        async for message in consumer:
            try:
                update = _decode_update(message.value)
            except msgspec.MsgspecError as exc:
                log.warning("ignoring malformed model update %r: %s", message.value[:200], exc)
                continue
            await on_update(update.model_version)
    finally:
        await consumer.stop()
