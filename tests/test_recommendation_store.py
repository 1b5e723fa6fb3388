"""Writing and reading lists against a real Redis, including an outage mid-write."""

import asyncio
import threading
import time

import pytest
import redis.asyncio as aioredis

from streams import redis_keys
from streams.local_stack import redis_command, start_server, stop_pid, free_port
from streams.log_positions import Position
from streams.recommendation_store import RecommendationWriter, build_list, read_event_stats, read_recommendations
from streams.version_fence import RAISE, fence_of

pytestmark = pytest.mark.integration


def write(url, **kwargs) -> bool:
    async def go():
        client = aioredis.Redis.from_url(url)
        try:
            return await RecommendationWriter(client, ttl_seconds=60, max_backoff_seconds=0.5).write(**kwargs)
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_lists_of_an_older_model_version_never_replace_a_newer_ones(redis_server, redis_client):
    older, newer = "20261101T000000Z-aaaa", "20261201T000000Z-bbbb"
    assert write(redis_server.url, lists=[build_list("f1", [("O", 1.0)], older)], fence=fence_of(older))
    redis_client.eval(RAISE, 1, redis_keys.MODEL_FENCE, fence_of(newer))  # what publishing does first
    assert write(redis_server.url, lists=[build_list("f1", [("N", 1.0)], newer)], fence=fence_of(newer))
    for version in (older, "online-popularity-cooccurrence-1"):
        refused = write(redis_server.url, lists=[build_list("f1", [("X", 1.0)], version)],
                        slot_lists=[(redis_keys.discover("f1"), build_list("f1", [("X", 1.0)], version))],
                        popular=build_list("", [("X", 1.0)], version), counters={"valid:fenced": 1},
                        fence=fence_of(version))
        assert refused is False
    assert read_recommendations(redis_client, "f1").model_version == newer
    assert redis_client.get(redis_keys.discover("f1")) is None and redis_client.get(redis_keys.POPULAR) is None
    assert read_event_stats(redis_client)["valid:fenced"] == 2  # what is not a list is still written
    # A fence never goes down: publishing the older version again leaves the newer one in force.
    assert redis_client.eval(RAISE, 1, redis_keys.MODEL_FENCE, fence_of(older)).decode() == fence_of(newer)


def test_a_batch_written_twice_is_counted_once(redis_server, redis_client):
    group = "count-once"
    before, after = Position(9, 100.0), Position(19, 101.5)
    batch = dict(counters={"valid:clicks": 10, "dead_letter:clicks": 1}, prequential={"session:hits": 0.5},
                 segment_moves={"lapsing": 1}, positions=(group, {"clicks:0": after}))
    redis_client.hset(redis_keys.counted_positions(group), "clicks:0", before.encode())
    write(redis_server.url, counted_before={"clicks:0": before}, **batch)
    # The same write again, as a retry whose first reply was lost would send it.
    write(redis_server.url, counted_before={"clicks:0": before}, **batch)
    stats = read_event_stats(redis_client)
    assert (stats["valid:clicks"], stats["dead_letter:clicks"]) == (10, 1)
    assert float(redis_client.hget(redis_keys.PREQUENTIAL_STATS, "session:hits")) == 0.5
    assert int(redis_client.hget(redis_keys.SEGMENT_SIZES, "lapsing")) == 1
    assert Position.decode(redis_client.hget(redis_keys.counted_positions(group), "clicks:0")) == after
    # The next batch, started from where the first ended, is counted.
    write(redis_server.url, counters={"valid:clicks": 2}, positions=(group, {"clicks:0": Position(21, 102.0)}),
          counted_before={"clicks:0": after})
    assert read_event_stats(redis_client)["valid:clicks"] == 12


def test_lists_are_read_back_with_ttl_and_fallback(redis_server, redis_client):
    personal = build_list("u1", [("A", 0.9), ("B", 0.5)], "v1", event_ts=123.0)
    popular = build_list("", [("P", 1.0)], "v1")
    write(redis_server.url, lists=[personal], popular=popular, products=[("A", b'{"item_id":"A","title":"t"}')],
          counters={"valid:clicks": 3, "dead_letter:clicks": 0})
    got = read_recommendations(redis_client, "u1")
    assert got.items == ["A", "B"] and got.scores == [0.9, 0.5] and got.rec_id == personal.rec_id and not got.fallback
    assert 0 < redis_client.ttl(redis_keys.recs("u1")) <= 60
    fallback = read_recommendations(redis_client, "stranger")
    assert fallback.fallback and fallback.user_id == "stranger" and fallback.items == ["P"]
    assert read_event_stats(redis_client) == {"valid:clicks": 3}
    assert redis_client.get(redis_keys.product("A")) == b'{"item_id":"A","title":"t"}'


def test_no_list_and_no_fallback_reads_none(redis_client):
    assert read_recommendations(redis_client, "nobody") is None


def test_a_write_during_an_outage_waits_for_redis_and_lands(tmp_path):
    port = free_port()
    server = start_server("redis", redis_command(port), port, tmp_path / "redis.log")
    url = server.url
    stop_pid(server.pid)
    restarted = {}

    def restart_later():
        time.sleep(1.5)
        restarted["server"] = start_server("redis", redis_command(port), port, tmp_path / "redis2.log")

    thread = threading.Thread(target=restart_later)
    thread.start()
    try:
        write(url, lists=[build_list("u1", [("A", 1.0)], "v1")], counters={"valid:clicks": 1})
        thread.join()
        import redis
        client = redis.Redis.from_url(url)
        assert read_recommendations(client, "u1").items == ["A"]
        assert read_event_stats(client) == {"valid:clicks": 1}
    finally:
        thread.join()
        if "server" in restarted:
            stop_pid(restarted["server"].pid)


def test_reasons_round_trip_with_each_distinct_evidence_stored_once():
    import msgspec

    from models.explanations import Reason
    from streams.recommendation_store import StoredList, build_list, decode_list, encode_list

    reasons = [Reason("similar_to", "85123A"), Reason("bought_before", "3|2011-11-29"), Reason("similar_to", "85123A"),
               Reason("trending"), Reason("bought_with", "22632"), Reason("discover", "als")] * 3
    listing = build_list("17850", [(f"I{n}", 1.0 / (n + 1)) for n in range(len(reasons))], "v1", reasons=reasons)
    raw = encode_list(listing)
    stored = msgspec.msgpack.decode(raw, type=StoredList)
    assert sorted(stored.evidence) == sorted(["85123A", "3|15307", "", "22632", "als"])  # a date as its day
    assert len(stored.reason_codes) == len(stored.evidence_index) == len(reasons)
    assert decode_list(raw, "17850").reasons == reasons
