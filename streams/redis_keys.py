"""Every Redis key the product reads or writes, in one place.

| key | value |
|---|---|
| ``recs:{user_id}`` | recommendation list for one user, compact msgpack (``StoredList``; read as a ``RecommendationList``): the blended list |
| ``buyagain:{user_id}`` | the same shape: items the customer bought before, most likely to be rebought first |
| ``discover:{user_id}`` | the same shape: items the customer never bought |
| ``popular:all`` | the same shape, non-personalised, for users without a list |
| ``product:{item_id}`` | JSON catalog record as received on the products topic |
| ``similar:{item_id}`` | JSON ``{"items": [...], "scores": [...]}``: items like this one |
| ``segments:{bucket}`` | hash: ``user_id`` -> the customer's segment name, for the customers in one of ``SEGMENT_BUCKETS`` buckets (``segment_bucket``): a small hash is stored packed, a few dozen bytes a customer instead of a key each |
| ``popular:segment:{name}`` | the popular list within one segment |
| ``stats:prequential`` | hash of prequential sums per list variant (see ``streams.prequential``) |
| ``stats:events`` | hash of counters: ``valid:{topic}``, ``dead_letter:{topic}``, ``duplicate:{topic}`` |
| ``stats:window`` | hash: online-metrics scope -> JSON sums of its current window (``streams.dashboard_feed``) |
| ``stats:timeline`` | list of JSON snapshots of the stream, newest first, one per 10 s |
| ``stats:segments`` | hash: segment name -> customers in it |
| ``offsets:{group}`` | hash: ``topic:partition`` -> ``offset:kafka_time`` up to which a worker group's counters go |
| ``deadletters:{group}`` | hash: ``topic:partition`` -> JSON note of the offsets a batch with dead letters covers and where the dead-letter topic ended (``streams.dead_letter_log``) |
| ``attempts:{group}`` | hash: ``topic:partition`` -> ``offset:count``, the crash-loop breaker's attempts at a batch (``streams.crash_loop``) |
| ``session:{user_id}`` | JSON snapshot of the customer's live session for the dashboard (recent items, cart, segment); expires ``SESSION_GAP_SECONDS`` after their last event |
| ``experiment:current`` | JSON: the running (or last) experiment, its arms and their shares (``streams.experiments``) |
| ``experiment:{name}:{outcome}`` | hash: ``user_id`` -> the customer's lists, clicked lists, purchases, hits or revenue in that experiment |
| ``dismissed:{user_id}`` | hash: item -> the time (epoch seconds) until which the customer's dismissal keeps it out of their lists; the key expires then |
| ``model:fence`` | the newest published version's fence: older lists may not be written (``streams.version_fence``) |
"""

import zlib

POPULAR = "popular:all"
EVENT_STATS = "stats:events"
PREQUENTIAL_STATS = "stats:prequential"
WINDOW_STATS = "stats:window"
TIMELINE = "stats:timeline"
SEGMENT_SIZES = "stats:segments"
MODEL_FENCE = "model:fence"


def counted_positions(group: str) -> str:
    return f"offsets:{group}"


def crash_attempts(group: str) -> str:
    return f"attempts:{group}"


def dead_letter_notes(group: str) -> str:
    return f"deadletters:{group}"


def recs(user_id: str) -> str:
    return f"recs:{user_id}"


def buy_again(user_id: str) -> str:
    return f"buyagain:{user_id}"


def discover(user_id: str) -> str:
    return f"discover:{user_id}"


def session(user_id: str) -> str:
    return f"session:{user_id}"


def dismissed(user_id: str) -> str:
    return f"dismissed:{user_id}"


def product(item_id: str) -> str:
    return f"product:{item_id}"


def similar(item_id: str) -> str:
    return f"similar:{item_id}"


# Redis packs a hash of up to 128 short fields (hash-max-listpack-entries): with this many
# buckets, up to about 2M customers stay packed.
SEGMENT_BUCKETS = 16_384


def segment_bucket(user_id: str) -> str:
    """The hash holding ``user_id``'s segment (field: the user id)."""
    return f"segments:{zlib.crc32(user_id.encode()) % SEGMENT_BUCKETS}"


def segment_popular(name: str) -> str:
    return f"popular:segment:{name}"
