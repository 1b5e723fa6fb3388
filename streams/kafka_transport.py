"""Faust's Kafka transport: the consumer's fetch wait taken from the settings, and no
events lost after a rebalance or when a partition's log restarted.

Faust asks the broker to hold a fetch for up to 1.5 s while there is nothing new
(``fetch_max_wait_ms``). Apache Kafka answers as soon as any data arrives, but some
Kafka-compatible brokers (Tansu, the local stack's) hold every fetch for the whole
wait, which put up to 1.5 s into each event's freshness. ``KAFKA_FETCH_MAX_WAIT_MS``
bounds it; against Apache Kafka a short wait only adds idle fetches.

After a rebalance Faust seeks each stream partition to its committed offset, then
drops what was fetched meanwhile; a partition the group never committed is not
moved, so what was fetched from it was dropped for good. Those partitions are
sought to the start, as Kafka's ``auto.offset.reset=earliest`` would place them.

A committed offset beyond the end of its partition means the log started over (a
topic recreated, a broker that lost its data and then received the group's last
commits). Faust would skip every message below that offset, silently; those
partitions are read from the start too. The end a broker reports is not taken on
its word: Tansu answers the first offset of the partition's last record batch,
short of its true end, which made a restarted worker read its whole history again.
So the last record Redis counted for the partition (``offsets:{APP_ID}``: its offset and
Kafka time) is read back: the same time at the same offset means the same log; a log that
started over restarts its offsets but not its clock. Partitions Redis does not count (the
online summaries) keep their committed offset while the record before it is there: reading them
from the start after every rebalance added every summary to the online metrics again.
"""

from __future__ import annotations

import logging

import faust
from faust.transport.drivers import aiokafka as driver

from streams.connections import async_redis_client
from streams.log_reader import read_ranges
from streams.recommendation_store import RecommendationWriter
from streams.settings import Settings

log = logging.getLogger(__name__)


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka builds its fetcher from this at start(), which has not happened yet.
        consumer._fetch_max_wait_ms = self.app.settings.kafka_fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def seek_to_committed(self):
        committed = dict(await super().seek_to_committed())
        changelogs = self.app.tables.changelog_topics
        streams = [tp for tp in committed if tp.topic not in changelogs]
        ends = await self.highwaters(*[tp for tp in streams if committed[tp]])
        beyond = [tp for tp in streams if committed[tp] and ends.get(tp) is not None and committed[tp] > ends[tp]]
        for tp in await logs_started_over(self.app.settings, {tp: committed[tp] for tp in beyond}):
            log.warning("%s[%d] ends at offset %d but %d was committed: its log started over; "
                        "reading it from the start", tp.topic, tp.partition, ends[tp], committed[tp])
            committed[tp] = None  # Faust then forgets the offset it read up to, too
        from_start = [tp for tp in streams if not committed[tp]]
        if from_start:
            await self._thread.seek_to_beginning(*from_start)
        return committed


class _Transport(driver.Transport):
    Consumer = _Consumer


async def logs_started_over(settings: Settings, committed: dict) -> list:
    """Of the partitions in ``committed`` (partition -> committed offset, beyond the end the broker
    reports), those whose log really started over. Where Redis counted the partition, the record it
    counted last must still be there with the same Kafka time; elsewhere (the online-metrics topic,
    which Redis does not count) the record before the committed offset must be there."""
    counted = await counted_positions(settings, list(committed))
    found = await record_times(settings, {tp: counted[tp].offset if tp in counted else offset - 1
                                          for tp, offset in committed.items()})
    return [tp for tp in committed
            if tp not in found or (tp in counted and abs(found[tp] - counted[tp].timestamp) > 0.0005)]


async def counted_positions(settings: Settings, partitions: list) -> dict:
    """The position Redis has counted up to in each of ``partitions``, where it has one."""
    if not partitions:
        return {}
    sources = {f"{tp.topic}:{tp.partition}": tp for tp in partitions}
    client = async_redis_client(settings)
    try:
        positions, _ = await RecommendationWriter(client, settings.recs_ttl_seconds).read_progress(
            settings.app_id, sources)
    finally:
        await client.aclose()
    return {sources[source]: position for source, position in positions.items()}


async def record_times(settings: Settings, offsets: dict, timeout_seconds: float = 3.0) -> dict:
    """For the partitions of ``offsets`` (partition -> offset) that hold a record at that offset,
    the record's Kafka time in seconds."""
    found = await read_ranges(settings, {(tp.topic, tp.partition): (offset, offset) for tp, offset in offsets.items()},
                              timeout_seconds)
    return {tp: found[tp.topic, tp.partition][0].timestamp / 1000 for tp in offsets if found[tp.topic, tp.partition]}


class WorkerApp(faust.App):
    """``faust.App`` whose consumer waits at most ``KAFKA_FETCH_MAX_WAIT_MS`` for a fetch."""

    def __init__(self, settings: Settings, *args, **kwargs):
        self.settings = settings
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
