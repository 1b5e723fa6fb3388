"""Publishing against real Redis: a dismissal outlives it, and it names products the platform has
not sent yet without replacing those it has."""

import asyncio
import io
import json
import time

import pandas as pd
import pytest

from offline.publish import publish_to_redis
from streams import redis_keys
from streams.connections import async_redis_client
from streams.model_artifacts import ArtifactStore
from streams.recommendation_store import RecommendationWriter, read_recommendations

pytestmark = pytest.mark.integration


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_a_version_published_after_a_dismissal_leaves_the_item_out_until_the_dismissal_ends(stack_settings,
                                                                                               redis_client):
    now = time.time()
    writer = RecommendationWriter(async_redis_client(stack_settings), ttl_seconds=60)
    asyncio.run(writer.write(dismissals={"u1": {"B": now + 3600, "C": now - 1}}))
    assert redis_client.ttl(redis_keys.dismissed("u1")) > 3000
    lists = pd.DataFrame({"user_id": ["u1", "u2"], "items": [["A", "B", "C"], ["B", "A"]],
                          "scores": [[0.9, 0.8, 0.7], [0.9, 0.8]],
                          "reasons": [["bought_before", "similar_to", "trending"], ["discover", "trending"]],
                          "evidence": [["2|2011-11-01", "A", ""], ["als", ""]]})
    items = pd.DataFrame({"item_id": ["A", "B", "C"], "category": ["mugs", "mugs", ""],
                          "price": [2.5, float("nan"), 1.0], "title": ["WHITE MUG", "BLUE MUG", ""]})
    redis_client.set(redis_keys.product("B"), b'{"item_id": "B", "title": "BLUE MUG, FROM THE PLATFORM"}')
    files = {"recommendations.parquet": parquet(lists), "items.parquet": parquet(items),
             "similar_items.parquet": parquet(pd.DataFrame({"item_id": [], "items": [], "scores": []})),
             "segments.parquet": parquet(pd.DataFrame({"user_id": ["u1"], "segment": ["s"]})),
             "popular.json": json.dumps({"all": [["A", 1.0]], "segments": {}}).encode()}
    artifact = ArtifactStore(stack_settings.artifact_dir).write("20261202T120000Z-test", files, {})
    publish_to_redis(artifact, stack_settings)
    # B is dismissed for another hour; C's dismissal has ended; u2 dismissed nothing.
    first = read_recommendations(redis_client, "u1")
    assert first.items == ["A", "C"] and first.reasons == [("bought_before", "2|2011-11-01"), ("trending", "")]
    assert read_recommendations(redis_client, "u2").items == ["B", "A"]
    assert json.loads(redis_client.get(redis_keys.product("A"))) == {"item_id": "A", "title": "WHITE MUG",
                                                                     "category": "mugs", "price": 2.5}
    assert json.loads(redis_client.get(redis_keys.product("B")))["title"] == "BLUE MUG, FROM THE PLATFORM"
    assert redis_client.get(redis_keys.product("C")) is None  # no title known: nothing to name it by
    # Without EXPLAIN_LISTS a version is published without reasons.
    later = ArtifactStore(stack_settings.artifact_dir).write("20261202T130000Z-test", files, {})
    publish_to_redis(later, stack_settings.replace(explain_lists=False))
    plain = read_recommendations(redis_client, "u2")
    assert plain.model_version == "20261202T130000Z-test" and plain.items == ["B", "A"] and plain.reasons is None
