"""Publishing a model version: bulk-write Redis, then tell running workers to switch."""

from __future__ import annotations

import json
import time
from typing import Callable, Iterable

import msgspec
import redis
from kafka import KafkaProducer

from streams import redis_keys
from streams.connections import kafka_options, redis_client
from streams.model_artifacts import Artifact
from streams.recommendation_store import RecommendationList, new_rec_id
from streams.settings import Settings

BATCH = 1000
_encode = msgspec.json.Encoder().encode


def _batched(commands: Iterable[tuple], client: redis.Redis, on_batch: Callable[[int], None]) -> int:
    pipe, pending, written = client.pipeline(transaction=False), 0, 0
    for name, *args in commands:
        getattr(pipe, name)(*args)
        pending += 1
        if pending == BATCH:
            pipe.execute()
            written += pending
            on_batch(written)
            pending = 0
    if pending:
        pipe.execute()
        written += pending
        on_batch(written)
    return written


def publish_to_redis(artifact: Artifact, settings: Settings, on_batch: Callable[[int], None] = lambda n: None) -> int:
    """Write every customer's lists (recs, buy again, discover), similar items, popular lists and segments; return the key count."""
    version = artifact.version
    now = round(time.time(), 3)
    slots = [(redis_keys.recs, artifact.frame("recommendations.parquet"))]
    if artifact.has("buy_again.parquet"):
        slots += [(redis_keys.buy_again, artifact.frame("buy_again.parquet")),
                  (redis_keys.discover, artifact.frame("discover.parquet"))]
    similar = artifact.frame("similar_items.parquet")
    segments = artifact.frame("segments.parquet")
    popular = artifact.json("popular.json")
    ttl = settings.recs_ttl_seconds

    def as_list(user_id: str, items, scores) -> bytes:
        return _encode(RecommendationList(user_id=user_id, items=list(items), scores=[float(s) for s in scores],
                                          rec_id=new_rec_id(), model_version=version, generated_at=now))

    def commands():
        for key, lists in slots:
            for user_id, items, scores in lists.itertuples(index=False):
                yield "set", key(user_id), as_list(user_id, items, scores), ttl
        for item_id, items, scores in similar.itertuples(index=False):
            yield "set", redis_keys.similar(item_id), _encode({"items": list(items), "scores": [float(s) for s in scores]})
        for user_id, segment in segments.itertuples(index=False):
            yield "set", redis_keys.segment(user_id), segment
        # Segment sizes start from this version's segments; workers then move customers between them.
        yield "delete", redis_keys.SEGMENT_SIZES
        for segment, size in segments["segment"].value_counts().items():
            yield "hset", redis_keys.SEGMENT_SIZES, segment, int(size)
        yield "set", redis_keys.POPULAR, as_list("", *zip(*popular["all"]))
        for segment, entries in popular["segments"].items():
            yield "set", redis_keys.segment_popular(segment), as_list("", *zip(*entries))

    client = redis_client(settings)
    try:
        return _batched(commands(), client, on_batch)
    finally:
        client.close()


def announce_model(artifact: Artifact, settings: Settings) -> None:
    """The model-updates event workers react to by loading the new version."""
    producer = KafkaProducer(**kafka_options(settings))
    event = {"model_version": artifact.version, "published_at": time.time()}
    producer.send(settings.topic_model_updates, key=b"model", value=json.dumps(event).encode())
    producer.flush()
    producer.close()
