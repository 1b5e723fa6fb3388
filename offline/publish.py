"""Publishing a model version: bulk-write Redis, then tell running workers to switch."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Iterable, Iterator

import msgspec
import pandas as pd
import redis
from kafka import KafkaProducer

from models.explanations import TRENDING, Reason, popular as popular_in
from streams import redis_keys
from streams.connections import kafka_options, redis_client
from streams.model_artifacts import Artifact
from streams.recommendation_store import new_rec_id, stored_list
from streams.settings import Settings
from streams.version_fence import RAISE, WRITE_LISTS, fence_of, write_arguments

BATCH = 1000
LISTS_PER_SCRIPT = 100
_encode = msgspec.json.Encoder().encode


class StaleVersion(RuntimeError):
    """A newer model version than the one being published is already in Redis."""


def batched(commands: Iterable[tuple], client: redis.Redis, on_batch: Callable[[int], None]) -> int:
    pipe, pending, written = client.pipeline(transaction=False), 0, 0
    write_lists = client.register_script(WRITE_LISTS)
    for name, *args in commands:
        if name == "fenced":
            keys, arguments = args
            write_lists(keys=keys, args=arguments, client=pipe)
            pending += len(keys) - 1
        else:
            getattr(pipe, name)(*args)
            pending += 1
        if pending >= BATCH:
            pipe.execute()
            written += pending
            on_batch(written)
            pending = 0
    if pending:
        pipe.execute()
        written += pending
        on_batch(written)
    return written


def read_dismissals(client: redis.Redis, now: float) -> dict[str, set[str]]:
    """Items each customer dismissed that must stay out of their lists at ``now``."""
    keys = list(client.scan_iter(match=redis_keys.dismissed("*"), count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    dismissals = {}
    for key, until in zip(keys, pipe.execute()):
        kept = {item.decode() for item, ts in until.items() if float(ts) > now}
        if kept:
            dismissals[key.decode().split(":", 1)[1]] = kept
    return dismissals


def without_dismissed(user_id: str, items, scores, reasons, dismissals: dict[str, set[str]]):
    unwanted = dismissals.get(user_id)
    if not unwanted:
        return items, scores, reasons
    kept = [n for n, item in enumerate(items) if item not in unwanted]
    return [items[n] for n in kept], [scores[n] for n in kept], [reasons[n] for n in kept] if reasons else None


def catalog_records(artifact: Artifact):
    """(item_id, catalog record) for the items the trainer knows a title of: lists and their
    explanations name products even before the platform sends its catalog."""
    if not artifact.has("items.parquet"):
        return
    items = artifact.frame("items.parquet")
    if "title" not in items:
        return
    for item_id, title, category, price in items[["item_id", "title", "category", "price"]].itertuples(index=False):
        if title:
            yield item_id, _encode({"item_id": item_id, "title": title, "category": category,
                                    **({"price": float(price)} if price == price and price > 0 else {})})


def _explained_rows(lists):
    """(user_id, items, scores, reasons or None) of a lists frame, with or without its reasons."""
    if "reasons" not in lists:
        for user_id, items, scores in lists[["user_id", "items", "scores"]].itertuples(index=False):
            yield user_id, items, scores, None
        return
    for user_id, items, scores, codes, evidence in lists[["user_id", "items", "scores", "reasons", "evidence"]] \
            .itertuples(index=False):
        yield user_id, items, scores, list(zip(codes, evidence))


@dataclass
class Publication:
    """What a version writes besides its products, read from its artifact before anything is
    written: a missing file stops the publish before the version's fence rises."""

    version: str
    slots: list[tuple[Callable[[str], str], pd.DataFrame]]  # each customer list's key and frame
    similar: pd.DataFrame
    segments: pd.DataFrame
    popular: dict

    @classmethod
    def read(cls, artifact: Artifact) -> "Publication":
        slots = [(redis_keys.recs, artifact.frame("recommendations.parquet"))]
        if artifact.has("buy_again.parquet"):
            slots += [(redis_keys.buy_again, artifact.frame("buy_again.parquet")),
                      (redis_keys.discover, artifact.frame("discover.parquet"))]
        return cls(artifact.version, slots, artifact.frame("similar_items.parquet"),
                   artifact.frame("segments.parquet"), artifact.json("popular.json"))


def publish_to_redis(artifact: Artifact, settings: Settings, on_batch: Callable[[int], None] = lambda n: None) -> int:
    """Write every customer's lists (recs, buy again, discover), less the items they dismissed, similar
    items, popular lists and segments; return the key count."""
    publication = Publication.read(artifact)
    client = redis_client(settings)
    try:
        fence = raise_fence(client, artifact.version)
        encoded = list_encoder(publication.version, settings.explain_lists)
        lists = customer_list_commands(publication.slots, encoded, fence, settings.recs_ttl_seconds,
                                       read_dismissals(client, time.time()))
        return batched(chain(lists, shop_commands(publication, catalog_records(artifact), encoded, fence)),
                        client, on_batch)
    finally:
        client.close()


def raise_fence(client: redis.Redis, version: str) -> str:
    """Raise the version's fence before any list is written (from then on, workers still on an
    older version cannot overwrite what the publish writes) and return it; StaleVersion where a
    newer version is in force already."""
    fence = fence_of(version)
    in_force = client.eval(RAISE, 1, redis_keys.MODEL_FENCE, fence).decode()
    if in_force > fence:
        raise StaleVersion(f"a newer model version (fence {in_force}) is already published; {version} is not written")
    return fence


def customer_list_commands(slots: Iterable[tuple[Callable[[str], str], pd.DataFrame]], encoded: Callable[..., bytes],
                           fence: str, ttl: int, dismissals: dict[str, set[str]]) -> Iterator[tuple]:
    """The fenced writes of customers' lists: each slot's key and lists frame."""
    yield from _fenced(fence, ((key(user_id), encoded(*without_dismissed(user_id, items, scores, reasons, dismissals)),
                                ttl)
                               for key, lists in slots
                               for user_id, items, scores, reasons in _explained_rows(lists)))


def shop_commands(publication: Publication, products: Iterable[tuple[str, bytes]], encoded: Callable[..., bytes],
                  fence: str) -> Iterator[tuple]:
    """The Redis commands of a publish after the customers' lists: products, similar items, segments, popular lists."""
    for item_id, record in products:
        # nx: a record the platform sent on the products topic is never replaced.
        yield "set", redis_keys.product(item_id), record, None, None, True
    for item_id, items, scores in publication.similar.itertuples(index=False):
        yield "set", redis_keys.similar(item_id), _encode({"items": list(items), "scores": [float(s) for s in scores]})
    yield from _segment_commands(publication.segments)
    yield from _popular_commands(publication.popular, encoded, fence)


def list_encoder(version: str, explain: bool, now: float | None = None) -> Callable[..., bytes]:
    """Stored lists of ``version``, all stamped with one time: ``now``, by default when the publish
    begins writing them."""
    now = round(time.time() if now is None else now, 3)

    def encoded(items, scores, reasons=None) -> bytes:
        # Without EXPLAIN_LISTS the published lists carry no reasons either: the smallest values.
        return stored_list(items, scores, new_rec_id(), version, now, reasons=reasons if explain else None)

    return encoded


def _fenced(fence: str, entries: Iterable[tuple[str, bytes, int]]) -> Iterator[tuple]:
    """The lists, a script call per ``LISTS_PER_SCRIPT``: each written only while no newer version is."""
    chunk = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == LISTS_PER_SCRIPT:
            yield ("fenced", *write_arguments(fence, chunk))
            chunk = []
    if chunk:
        yield ("fenced", *write_arguments(fence, chunk))


def _segment_commands(segments: pd.DataFrame) -> Iterator[tuple]:
    for user_id, segment in segments.itertuples(index=False):
        yield "hset", redis_keys.segment_bucket(user_id), user_id, segment
    # Segment sizes start from this version's segments; workers then move customers between them.
    yield "delete", redis_keys.SEGMENT_SIZES
    for segment, size in segments["segment"].value_counts().items():
        yield "hset", redis_keys.SEGMENT_SIZES, segment, int(size)


def _popular_commands(popular: dict, encoded: Callable[..., bytes], fence: str) -> Iterator[tuple]:
    best_sellers = popular["all"]
    reasons = [Reason(TRENDING)] * len(best_sellers)
    yield from _fenced(fence, [(redis_keys.POPULAR, encoded(*zip(*best_sellers), reasons), 0)])
    for segment, entries in popular["segments"].items():
        yield "set", redis_keys.segment_popular(segment), encoded(*zip(*entries), [popular_in(segment)] * len(entries))


def announce_model(artifact: Artifact, settings: Settings) -> None:
    """The model-updates event workers react to by loading the new version."""
    producer = KafkaProducer(**kafka_options(settings))
    event = {"model_version": artifact.version, "published_at": time.time()}
    producer.send(settings.topic_model_updates, key=b"model", value=json.dumps(event).encode())
    producer.flush()
    producer.close()
