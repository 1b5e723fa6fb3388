"""Online metrics as windowed sums: what each batch adds, and what a window adds up to.

Each batch a worker handles becomes a few ``OnlineSummary`` records on the
online-metrics topic, one per scope: every (model version, segment) the batch
served lists to or credited actions to, and the stream as a whole (events, dead
letters, list freshness). Records are keyed by scope, so all of one scope's
records land on one partition and the worker owning it adds them up in a
hopping Faust table (``streams.app``) without repartitioning. ``window_report``
turns one window's sums into the rates the dashboard and ``/metrics`` show.

>>> batch = BatchSummaries()
>>> batch.list_written("v1", "lapsing", freshness_seconds=0.02)
>>> batch.list_written("v1", "lapsing", freshness_seconds=0.3)
>>> batch.feedback("view", "v1", "lapsing", "implicit")
>>> batch.list_clicked("v1", "lapsing")  # the first credited view of that list
>>> batch.purchase("v1", "lapsing", hit=True)
>>> batch.events({"valid:clicks": 40, "dead_letter:clicks": 2})
>>> totals = {}
>>> for key, summary in batch.records():
...     totals[key] = add_counts(totals.get(key, {}), summary_counts(decode_summary(summary)))
>>> report = window_report(totals.values(), seconds=10.0)
>>> report["events_per_second"], report["dead_letters_per_second"]
(4.0, 0.2)
>>> [(s["segment"], s["click_through"], s["purchase_hit_rate"]) for s in report["scopes"]]
[('lapsing', 0.5, 1.0)]
"""

from __future__ import annotations

import bisect
from typing import Iterable

import msgspec

# The online metrics window: the last minute, moving every 10 s.
WINDOW_SECONDS = 60
WINDOW_STEP_SECONDS = 10
# Upper bounds (seconds) of the freshness buckets; one more bucket counts anything slower.
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STREAM = ("", "")  # the scope of stream-wide counts


class InvalidSummary(ValueError):
    """A record on the online-metrics topic is not an ``OnlineSummary``."""


class OnlineSummary(msgspec.Struct, omit_defaults=True, kw_only=True):
    model_version: str = ""
    segment: str = ""
    lists: int = 0  # lists written
    views: int = 0  # views of listed items credited to a list
    clicked_lists: int = 0  # lists whose first credited view this is
    carts: int = 0  # add-to-carts of listed items credited to a list
    purchases: int = 0  # orders by customers who had been served a list
    purchase_hits: int = 0  # those of them with an item from the list
    events: int = 0  # valid events handled
    dead_letters: int = 0
    duplicates: int = 0
    freshness: list[int] = msgspec.field(default_factory=list)  # lists per FRESHNESS_BUCKETS bucket


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(OnlineSummary).decode
COUNT_FIELDS = tuple(f for f in OnlineSummary.__struct_fields__ if f not in ("model_version", "segment"))


def scope_key(model_version: str, segment: str) -> bytes:
    return f"{model_version}\x1f{segment}".encode()


def decode_summary(raw: bytes | None) -> OnlineSummary:
    try:
        summary = _decode(raw or b"")
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise InvalidSummary(f"not an online summary: {exc}") from None
    if len(summary.freshness) > len(FRESHNESS_BUCKETS) + 1:
        raise InvalidSummary(f"freshness has {len(summary.freshness)} buckets, at most {len(FRESHNESS_BUCKETS) + 1}")
    return summary


def summary_counts(summary: OnlineSummary) -> dict:
    """The summary as the plain dict the windowed table stores."""
    return msgspec.structs.asdict(summary)


def add_counts(total: dict, more: dict) -> dict:
    """``total`` plus ``more``: counts add up, freshness buckets add up one by one, labels are kept."""
    merged = {"model_version": more.get("model_version", ""), "segment": more.get("segment", "")}
    for name in COUNT_FIELDS:
        if name == "freshness":
            a, b = total.get(name) or [], more.get(name) or []
            merged[name] = [x + y for x, y in zip(a + [0] * (len(b) - len(a)), b + [0] * (len(a) - len(b)))]
        else:
            merged[name] = total.get(name, 0) + more.get(name, 0)
    return merged


class BatchSummaries:
    """The counts of one batch, per scope."""

    def __init__(self) -> None:
        self._scopes: dict[tuple[str, str], OnlineSummary] = {}

    def _scope(self, model_version: str, segment: str) -> OnlineSummary:
        key = (model_version, segment)
        if key not in self._scopes:
            self._scopes[key] = OnlineSummary(model_version=model_version, segment=segment)
        return self._scopes[key]

    def list_written(self, model_version: str, segment: str, freshness_seconds: float) -> None:
        self._scope(model_version, segment).lists += 1
        stream = self._scope(*STREAM)
        if not stream.freshness:
            stream.freshness = [0] * (len(FRESHNESS_BUCKETS) + 1)
        stream.freshness[bisect.bisect_left(FRESHNESS_BUCKETS, max(freshness_seconds, 0.0))] += 1

    def feedback(self, action: str, model_version: str, segment: str, attribution: str = "") -> None:
        scope = self._scope(model_version, segment)
        if action == "view":
            scope.views += 1
        elif action == "add_to_cart":
            scope.carts += 1

    def list_clicked(self, model_version: str, segment: str) -> None:
        self._scope(model_version, segment).clicked_lists += 1

    def purchase(self, model_version: str, segment: str, hit: bool) -> None:
        scope = self._scope(model_version, segment)
        scope.purchases += 1
        scope.purchase_hits += int(hit)

    def events(self, counters: dict[str, int]) -> None:
        """Add the pipeline's ``{outcome}:{topic}`` counters."""
        stream = self._scope(*STREAM)
        for key, amount in counters.items():
            outcome = key.partition(":")[0]
            if outcome == "valid":
                stream.events += amount
            elif outcome == "dead_letter":
                stream.dead_letters += amount
            elif outcome == "duplicate":
                stream.duplicates += amount

    def records(self) -> list[tuple[bytes, bytes]]:
        """(Kafka key, value) of every scope's summary."""
        return [(scope_key(*key), _encode(summary)) for key, summary in self._scopes.items()]


def freshness_quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile of a freshness histogram, interpolated within its bucket as Prometheus'
    ``histogram_quantile`` does; None without observations."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for n, count in enumerate(buckets):
        if count and cumulative + count >= rank:
            if n >= len(FRESHNESS_BUCKETS):
                return FRESHNESS_BUCKETS[-1]
            lower = FRESHNESS_BUCKETS[n - 1] if n else 0.0
            return lower + (FRESHNESS_BUCKETS[n] - lower) * (rank - cumulative) / count
        cumulative += count
    return FRESHNESS_BUCKETS[-1]


def click_through(clicked_lists: int, lists: int) -> float | None:
    """The share of lists written that earned a click. Over a window, clicks on lists written
    before it can outnumber its own lists when traffic falls: the share is capped at 1."""
    return min(clicked_lists / lists, 1.0) if lists else None


def window_report(totals: Iterable[dict], seconds: float) -> dict:
    """Rates over one window of ``seconds``, from the summed counts of every scope in it."""
    stream = {}
    scopes = []
    for counts in totals:
        if not counts:
            continue
        if (counts.get("model_version", ""), counts.get("segment", "")) == STREAM:
            stream = add_counts(stream, counts)
            continue
        lists, purchases = counts.get("lists", 0), counts.get("purchases", 0)
        scopes.append({
            "model_version": counts["model_version"], "segment": counts["segment"], "lists": lists,
            "views": counts.get("views", 0), "carts": counts.get("carts", 0), "purchases": purchases,
            "purchase_hits": counts.get("purchase_hits", 0),
            "clicked_lists": counts.get("clicked_lists", 0),
            "click_through": click_through(counts.get("clicked_lists", 0), lists),
            "purchase_hit_rate": counts.get("purchase_hits", 0) / purchases if purchases else None,
        })
    freshness = stream.get("freshness") or []
    return {
        "seconds": seconds,
        "events_per_second": stream.get("events", 0) / seconds,
        "dead_letters_per_second": stream.get("dead_letters", 0) / seconds,
        "duplicates": stream.get("duplicates", 0),
        "freshness_p50_seconds": freshness_quantile(freshness, 0.5),
        "freshness_p99_seconds": freshness_quantile(freshness, 0.99),
        "scopes": sorted(scopes, key=lambda s: (s["model_version"], s["segment"])),
    }
