"""Where recommendation lists are written to Redis, and read back for the storefront."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Awaitable, Callable, Iterable, TypeVar

import msgspec
import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialWithJitterBackoff

from models.explanations import BOUGHT_BEFORE, CODE_INDEX, REASON_CODES, Reason, date_to_day, day_to_date
from streams import redis_keys
from streams.crash_loop import Attempt
from streams.events import ProductRecord
from streams.experiments import outcome_key
from streams.log_positions import Position
from streams.version_fence import ONLINE_FENCE, WRITE_LISTS, write_arguments

log = logging.getLogger(__name__)

RETRYABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


class RecommendationList(msgspec.Struct, omit_defaults=True):
    """A list as the storefront reads it through the API: items and scores as parallel arrays."""

    user_id: str
    items: list[str]
    scores: list[float]
    rec_id: str
    model_version: str
    generated_at: float
    event_ts: float | None = None
    fallback: bool = False
    reasons: list[Reason] | None = None  # each item's (code, evidence): models.explanations
    arm: str | None = None  # the experiment arm that wrote it (streams.experiments)


class StoredList(msgspec.Struct, array_like=True):
    """A list as Redis keeps it: a msgpack array without field names or the user id (the key
    has it), scores in hundredths. The API reads it back as a ``RecommendationList``."""

    items: list[str]
    score_steps: list[int]  # round(score * SCORE_STEPS): one byte each for scores up to 1.27
    rec_id: bytes  # the list's hex id (``new_rec_id``) as bytes: half the size
    model_version: str
    generated_at: float  # whole seconds (an integer is 4 bytes shorter)
    event_ts: float | None = None
    reason_codes: bytes = b""  # each item's reason, one byte: its index in REASON_CODES
    evidence_index: bytes = b""  # each item's evidence, one byte: its index in ``evidence``
    evidence: list[str] = []  # the list's distinct evidence, each once (a list's items share a few)
    arm: str = ""


# The order is the list's; a score only says how strongly, and two decimals say it in a byte.
SCORE_STEPS = 100
_encode_stored = msgspec.msgpack.Encoder().encode
_decode_stored = msgspec.msgpack.Decoder(StoredList).decode
_decode_json_list = msgspec.json.Decoder(RecommendationList).decode
_decode_product = msgspec.json.Decoder(ProductRecord).decode


def product_title(record: bytes | None) -> str:
    """The title of a stored catalog record (``product:{item_id}``); "" without a readable one."""
    if record is None:
        return ""
    try:
        return _decode_product(record).title.strip()
    except msgspec.MsgspecError:
        return ""


def encode_list(listing: RecommendationList) -> bytes:
    return stored_list(listing.items, listing.scores, listing.rec_id, listing.model_version, listing.generated_at,
                       listing.event_ts, listing.reasons, listing.arm)


def stored_list(items: list[str], scores, rec_id: str, model_version: str, generated_at: float,
                event_ts: float | None = None, reasons=None, arm: str | None = None) -> bytes:
    steps = [round(float(score) * SCORE_STEPS) for score in scores]
    return _encode_stored(StoredList(list(items), steps, bytes.fromhex(rec_id), model_version, round(generated_at),
                                     event_ts, *_packed_reasons(reasons or ()), arm or ""))


def _packed_reasons(reasons) -> tuple[bytes, bytes, list[str]]:
    """Codes as bytes, and each item's evidence as a byte pointing into the list's distinct
    evidence; a purchase date is kept as its day number."""
    table: dict[str, int] = {}
    for code, evidence in reasons:
        table.setdefault(_pack_evidence(code, evidence), len(table))
    return (bytes(CODE_INDEX[code] for code, _ in reasons),
            bytes(table[_pack_evidence(code, evidence)] for code, evidence in reasons), list(table))


def _pack_evidence(code: str, evidence: str) -> str:
    if code != BOUGHT_BEFORE or "|" not in evidence:
        return evidence
    times, _, date = evidence.partition("|")
    return f"{times}|{date_to_day(date)}"


def _unpack_evidence(code: str, evidence: str) -> str:
    if code != BOUGHT_BEFORE or "|" not in evidence:
        return evidence
    times, _, day = evidence.partition("|")
    return f"{times}|{day_to_date(int(day))}"


def decode_list(raw: bytes, user_id: str = "") -> RecommendationList:
    """The stored list as the API shows it; a list stored as JSON by an earlier release is read too."""
    if raw[:1] == b"{":
        listing = _decode_json_list(raw)
        listing.user_id = user_id or listing.user_id
        return listing
    stored = _decode_stored(raw)
    reasons = [Reason(REASON_CODES[code], _unpack_evidence(REASON_CODES[code], stored.evidence[at]))
               for code, at in zip(stored.reason_codes, stored.evidence_index)]
    return RecommendationList(user_id, stored.items, [step / SCORE_STEPS for step in stored.score_steps],
                              stored.rec_id.hex(), stored.model_version, stored.generated_at, stored.event_ts,
                              reasons=reasons or None, arm=stored.arm or None)


def as_served(user_id: str, raw: bytes | None, fallback: bytes | None) -> RecommendationList | None:
    """The storefront's rule: the customer's own list, else the fallback list marked as such, else None."""
    if raw is not None:
        return decode_list(raw, user_id)
    if fallback is None:
        return None
    listing = decode_list(fallback, user_id)
    listing.fallback = True
    return listing


T = TypeVar("T")


def new_rec_id() -> str:
    """16 random hex digits; a fifth of uuid4's cost, and each ranked customer gets three lists."""
    return os.urandom(8).hex()


def build_list(
    user_id: str, scored: list[tuple[str, float]], model_version: str, event_ts: float | None = None,
    reasons: list[Reason] | None = None, arm: str | None = None,
) -> RecommendationList:
    return RecommendationList(
        user_id=user_id,
        items=[item for item, _ in scored],
        scores=[round(float(score), 4) for _, score in scored],
        rec_id=new_rec_id(),
        model_version=model_version,
        generated_at=round(time.time(), 3),
        event_ts=event_ts,
        reasons=reasons,
        arm=arm,
    )


class RedisRetry:
    """Runs a Redis call until it succeeds, pausing with capped, jittered exponential backoff
    while Redis is unreachable: an outage delays the worker, it never drops work."""

    def __init__(self, max_backoff_seconds: float = 5.0):
        self._backoff = ExponentialWithJitterBackoff(cap=max_backoff_seconds, base=0.05)

    async def __call__(self, attempt: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        while True:
            try:
                result = await attempt()
                if failures:
                    log.warning("Redis is back after %d failed attempts", failures)
                return result
            except RETRYABLE as exc:
                failures += 1
                delay = self._backoff.compute(failures)
                log.warning("Redis call failed (%s); retry %d in %.2f s", exc, failures, delay)
                await asyncio.sleep(delay)


# A batch's increments, applied once. KEYS: the positions' hash, then each hash to add to (the
# counters, prequential sums, segment sizes, an experiment's outcomes). ARGV: the number of
# sources, then per source its name, the position the batch started from ("" for none) and the
# position it reaches; then per hash "i" (integers) or "f" (floats), the number of fields, then
# field and amount pairs. When a source's position is no longer the one the batch started from,
# the batch was counted already (a write retried after its reply was lost, a worker that was
# presumed dead): nothing is added. Positions are written last: a failing increment (a key of
# the wrong type) stops the script before the batch is marked counted.
COUNT = """
local s = tonumber(ARGV[1])
for i = 0, s - 1 do
  if (redis.call('HGET', KEYS[1], ARGV[2 + 3 * i]) or '') ~= ARGV[3 + 3 * i] then return -1 end
end
local at = 2 + 3 * s
for k = 2, #KEYS do
  local command = ARGV[at] == 'f' and 'HINCRBYFLOAT' or 'HINCRBY'
  local n = tonumber(ARGV[at + 1])
  for i = 1, n do
    redis.call(command, KEYS[k], ARGV[at + 2 * i], ARGV[at + 2 * i + 1])
  end
  at = at + 2 + 2 * n
end
for i = 0, s - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 3 * i], ARGV[4 + 3 * i])
end
return 1
"""


def count_arguments(group: str, positions: dict[str, Position], started_from: dict[str, Position],
                    increments: list[tuple[str, dict, bool]]) -> tuple[list, list]:
    """KEYS and ARGV of ``COUNT``; ``increments`` are (hash key, {field: amount}, amounts are floats)."""
    keys, args = [redis_keys.counted_positions(group)], [len(positions)]
    for source, position in positions.items():
        before = started_from.get(source)
        args += [source, before.encode() if before is not None else "", position.encode()]
    for key, amounts, floats in increments:
        keys.append(key)
        args += ["f" if floats else "i", len(amounts)]
        for field, amount in amounts.items():
            args += [field, repr(float(amount)) if floats else amount]
    return keys, args


def counter_increments(counters: dict[str, int] | None, prequential: dict[str, float] | None,
                       segment_moves: dict[str, int] | None,
                       experiment_outcomes: dict[tuple[str, str], dict[str, float]] | None) -> list[tuple[str, dict, bool]]:
    """A batch's counter increments as ``count_arguments`` takes them, leaving out those that add nothing."""
    return [(key, amounts, floats) for key, amounts, floats in (
        (redis_keys.EVENT_STATS, {field: n for field, n in (counters or {}).items() if n}, False),
        (redis_keys.PREQUENTIAL_STATS, dict(prequential or {}), True),
        (redis_keys.SEGMENT_SIZES, {segment: n for segment, n in (segment_moves or {}).items() if n}, False),
        *experiment_increments(experiment_outcomes)) if amounts]


def experiment_increments(outcomes: dict[tuple[str, str], dict[str, float]] | None):
    for (experiment, outcome), amounts in (outcomes or {}).items():
        yield outcome_key(experiment, outcome), amounts, outcome == "revenue"


def fenced_entries(lists: Iterable[RecommendationList], slot_lists: Iterable[tuple[str, RecommendationList]],
                   popular: RecommendationList | None, ttl_seconds: int) -> list[tuple[str, bytes, int]]:
    """(key, stored list, ttl) of a batch's lists: those the version fence guards."""
    fenced = [(redis_keys.recs(rec_list.user_id), encode_list(rec_list), ttl_seconds) for rec_list in lists]
    fenced += [(key, encode_list(rec_list), ttl_seconds) for key, rec_list in slot_lists]
    if popular is not None:
        fenced.append((redis_keys.POPULAR, encode_list(popular), 0))
    return fenced


def state_commands(products: Iterable[tuple[str, bytes]], segments: dict[str, str] | None,
                   sessions: dict[str, bytes] | None, session_seconds: int,
                   dismissals: dict[str, dict[str, float]] | None) -> list[tuple]:
    """The pipeline commands for a batch's catalog records, segments, session snapshots and dismissals."""
    commands = [("set", redis_keys.product(item_id), record, {}) for item_id, record in products]
    commands += [("hset", redis_keys.segment_bucket(user_id), user_id, segment, {})
                 for user_id, segment in (segments or {}).items()]
    commands += [("set", redis_keys.session(user_id), snapshot, {"ex": session_seconds})
                 for user_id, snapshot in (sessions or {}).items()]
    for user_id, until in (dismissals or {}).items():
        key = redis_keys.dismissed(user_id)
        commands += [("hset", key, {"mapping": until}), ("expireat", key, int(max(until.values())) + 1, {})]
    return commands


class RecommendationWriter:
    """Writes a batch of lists, catalog records and counters in one pipelined round trip.

    A Redis outage never drops a batch: writing retries with capped, jittered
    exponential backoff until Redis is back, which holds back the consumer too.
    """

    def __init__(self, client: aioredis.Redis, ttl_seconds: int, max_backoff_seconds: float = 5.0,
                 session_seconds: int = 1800):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.session_seconds = session_seconds  # how long a session snapshot outlives its last event
        self.retry = RedisRetry(max_backoff_seconds)
        self._write_lists = client.register_script(WRITE_LISTS)
        self._count = client.register_script(COUNT)

    async def write(
        self,
        lists: Iterable[RecommendationList] = (),
        slot_lists: Iterable[tuple[str, RecommendationList]] = (),
        popular: RecommendationList | None = None,
        products: Iterable[tuple[str, bytes]] = (),
        counters: dict[str, int] | None = None,
        segments: dict[str, str] | None = None,
        prequential: dict[str, float] | None = None,
        segment_moves: dict[str, int] | None = None,
        dismissals: dict[str, dict[str, float]] | None = None,
        sessions: dict[str, bytes] | None = None,
        experiment_outcomes: dict[tuple[str, str], dict[str, float]] | None = None,
        fence: str = ONLINE_FENCE,
        positions: tuple[str, dict[str, Position]] | None = None,
        counted_before: dict[str, Position] | None = None,
    ) -> bool:
        """Write everything in one atomic round trip; False when the lists were refused because a
        newer model version than ``fence`` has been published (the rest is written all the same).
        ``experiment_outcomes``: (experiment, outcome) -> {user_id: amount} (``streams.experiments``).
        ``positions`` (worker group, {topic:partition: position}) records what the counters now
        include, in the same transaction, so a batch replayed after a crash is counted once;
        ``counted_before`` is where those positions stood when the batch began, so a write
        repeated after its reply was lost adds nothing twice."""
        fenced = fenced_entries(lists, slot_lists, popular, self.ttl_seconds)
        commands: list[tuple] = [("fenced", *write_arguments(fence, fenced), {})] if fenced else []
        commands += state_commands(products, segments, sessions, self.session_seconds, dismissals)
        increments = counter_increments(counters, prequential, segment_moves, experiment_outcomes)
        if increments or (positions is not None and positions[1]):
            group, moved = positions if positions is not None else ("", {})
            commands.append(("counted", *count_arguments(group, moved, counted_before or {}, increments), {}))
        if not commands:
            return True
        results = await self._execute_with_retry(commands)
        if commands[-1][0] == "counted" and results[-1] == -1:
            log.warning("a batch's counters were already in Redis (a repeated write); not added again")
        if fenced and results[0] == 0:
            log.warning("lists of model fence %s refused: a newer model version is published", fence)
            return False
        return True

    async def read_progress(self, group: str, sources) -> tuple[dict[str, Position], dict[str, Attempt]]:
        """For ``sources`` (``topic:partition``) of worker ``group``, in one round trip: the position
        Redis has counted up to, and the crash-loop breaker's last attempt (``streams.crash_loop``)."""
        wanted = sorted(set(sources))
        if not wanted:
            return {}, {}

        async def read():
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(redis_keys.counted_positions(group), wanted)
            pipe.hmget(redis_keys.crash_attempts(group), wanted)
            return await pipe.execute()

        positions, attempts = await self.retry(read)
        return ({source: Position.decode(value) for source, value in zip(wanted, positions) if value is not None},
                {source: Attempt.decode(value) for source, value in zip(wanted, attempts) if value is not None})

    async def record_crash_attempts(self, group: str, attempts: dict[str, Attempt]) -> None:
        mapping = {source: attempt.encode() for source, attempt in attempts.items()}
        await self.retry(lambda: self.client.hset(redis_keys.crash_attempts(group), mapping=mapping))

    async def read_products(self, item_ids: Iterable[str]) -> dict[str, ProductRecord]:
        """Catalog records of ``item_ids`` that Redis holds (one MGET, retried like writes)."""
        ids = list(item_ids)
        raw = await self.retry(lambda: self.client.mget([redis_keys.product(item) for item in ids]))
        records = {}
        for item, payload in zip(ids, raw):
            if payload is not None:
                try:
                    records[item] = _decode_product(payload)
                except msgspec.MsgspecError:
                    log.warning("product:%s in Redis is not a catalog record; ignored", item)
        return records

    async def _execute_with_retry(self, commands: list[tuple]) -> list:
        async def attempt():
            # A failed pipeline is reset by redis-py, so each attempt builds it again.
            # One MULTI/EXEC: no reader sees half a batch; the counters and the positions they
            # include are one script, so a failing counter leaves the batch uncounted.
            pipe = self.client.pipeline(transaction=True)
            for name, *args, kwargs in commands:
                if name == "fenced":
                    await self._write_lists(keys=args[0], args=args[1], client=pipe)  # queued, not sent
                elif name == "counted":
                    await self._count(keys=args[0], args=args[1], client=pipe)
                else:
                    getattr(pipe, name)(*args, **kwargs)
            return await pipe.execute()

        return await self.retry(attempt)


def read_recommendations(client: redis.Redis, user_id: str) -> RecommendationList | None:
    """The storefront's read: the user's list, else the popular fallback, else None."""
    raw = client.get(redis_keys.recs(user_id))
    return as_served(user_id, raw, client.get(redis_keys.POPULAR) if raw is None else None)


def read_event_stats(client: redis.Redis) -> dict[str, int]:
    """The worker's counters: ``valid:{topic}``, ``dead_letter:{topic}``, ``duplicate:{topic}``."""
    return {k.decode(): int(v) for k, v in client.hgetall(redis_keys.EVENT_STATS).items()}
