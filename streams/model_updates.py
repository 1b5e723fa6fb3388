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

from models.explanations import Reason
from models.offline_lists import ItemInfo, OfflineListsWithSession, RerankWeights
from streams.connections import aiokafka_options
from streams.model_artifacts import Artifact, ArtifactError, ArtifactStore
from streams.settings import Settings

log = logging.getLogger(__name__)


class ModelUpdate(msgspec.Struct):
    model_version: str
    published_at: float | None = None


_decode_update = msgspec.json.Decoder(ModelUpdate).decode


def offline_recommender(artifact: Artifact, popular_count: int,
                        weights: RerankWeights = RerankWeights()) -> OfflineListsWithSession:
    """The worker's recommender for one artifact version (hashes verified on load).

    Buy-again and discover lists, complements, item traits and category lists are used when
    the version has them."""
    lists = artifact.frame("recommendations.parquet")
    similar = artifact.frame("similar_items.parquet")
    popular = artifact.json("popular.json")
    has = artifact.has
    complements = artifact.frame("complements.parquet") if has("complements.parquet") else None
    items = artifact.frame("items.parquet") if has("items.parquet") else None
    slots = {"buyagain": artifact.frame("buy_again.parquet"), "discover": artifact.frame("discover.parquet")} \
        if has("buy_again.parquet") else {}
    return OfflineListsWithSession(
        user_lists=_neighbour_lists(lists),
        buy_again=_neighbour_lists(slots["buyagain"]) if slots else None,
        discover=_neighbour_lists(slots["discover"]) if slots else None,
        offline_reasons={slot: _list_reasons(frame) for slot, frame in {"recs": lists, **slots}.items()},
        similar_items=_neighbour_lists(similar),
        popular=_scored(popular["all"][:popular_count]),
        version=artifact.version,
        weights=weights,
        segment_popular={name: _scored(entries[:popular_count]) for name, entries in popular["segments"].items()},
        complements=_neighbour_lists(complements) if complements is not None else None,
        items={str(i): ItemInfo(str(c), float(p) if p == p and p > 0 else None)
               for i, c, p in items[["item_id", "category", "price"]].itertuples(index=False)}
        if items is not None else None,
        category_popular={name: _scored(entries[:popular_count])
                          for name, entries in popular.get("categories", {}).items()},
        recs_unbought=bool(artifact.manifest.get("validation", {}).get("recs_unbought", False)),
    )


def _neighbour_lists(frame) -> dict[str, list[tuple[str, float]]]:
    """{id: [(item, score), ...]} from a frame of (id, items, scores, ...) rows."""
    return {str(key): [(str(item), float(score)) for item, score in zip(items, scores)]
            for key, items, scores in frame.iloc[:, :3].itertuples(index=False)}


def _list_reasons(frame) -> dict[str, tuple[Reason, ...]]:
    """{user_id: reasons aligned with the list} from a lists frame that has them (else empty)."""
    if "reasons" not in frame:
        return {}
    return {str(user): tuple(Reason(str(c), str(e)) for c, e in zip(codes, evidence))
            for user, codes, evidence in frame[["user_id", "reasons", "evidence"]].itertuples(index=False)}


def _scored(entries) -> list[tuple[str, float]]:
    return [(str(item), float(score)) for item, score in entries]


def load_version(settings: Settings, version: str = "latest") -> tuple[OfflineListsWithSession, dict[str, str]] | None:
    """The recommender of ``version`` and its offline segments (user_id -> name), or None."""
    try:
        artifact = ArtifactStore(settings.artifact_dir).load(version)
    except ArtifactError as exc:
        log.warning("offline model %s not loaded: %s", version, exc)
        return None
    segments = artifact.frame("segments.parquet")
    return offline_recommender(artifact, settings.recs_count, settings.rerank_weights), dict(zip(segments["user_id"], segments["segment"]))


async def follow_model_updates(settings: Settings, on_update: Callable[[str], Awaitable[None]],
                               start_timeout: float = 10.0) -> None:
    """Call ``on_update("latest")`` at once and again once listening (nothing published in between
    is missed), then ``on_update(version)`` for each announcement. A broker that is slow to
    answer delays following, never the worker."""
    await on_update("latest")
    backoff = 1.0
    while True:
        consumer = AIOKafkaConsumer(settings.topic_model_updates, group_id=None, auto_offset_reset="latest",
                                    **aiokafka_options(settings))
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
            except (msgspec.MsgspecError, TypeError, RecursionError) as exc:  # e.g. a tombstone
                log.warning("ignoring malformed model update %r: %s", (message.value or b"")[:200], exc)
                continue
            await on_update(update.model_version)
    finally:
        await consumer.stop()
