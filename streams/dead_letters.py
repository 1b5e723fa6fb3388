"""Dead-letter records: the original bytes with why they were refused.

The value is the payload as received (a tombstone stays a tombstone); the reason
and its origin travel in Kafka headers, as Kafka Connect's dead-letter queues
do, so nothing about the bad event is re-encoded. An original too large for the
dead-letter topic is cut to its first bytes; headers then give its full size
and sha256, so a dead letter always fits and the bad event can still be traced.
"""

from __future__ import annotations

import hashlib
import time

REASON = "dlq.reason"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
REFUSED_AT = "dlq.refused.at"
ORIGINAL_BYTES = "dlq.original.bytes"
ORIGINAL_SHA256 = "dlq.original.sha256"
TRUNCATED = "dlq.truncated"


def fitted_value(value: bytes | None, limit: int) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The dead letter's value (the original, cut to ``limit`` bytes) and the headers saying so."""
    if value is None or len(value) <= limit:
        return value, []
    return value[:limit], [(TRUNCATED, b"true"), (ORIGINAL_BYTES, str(len(value)).encode()),
                           (ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode())]


def dead_letter_headers(reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        (REASON, reason.encode("utf-8", "replace")[:1000]),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (REFUSED_AT, f"{time.time():.3f}".encode()),
    ]


def read_headers(headers) -> dict[str, str]:
    """Headers of a consumed dead letter as a str -> str dict."""
    return {name: value.decode("utf-8", "replace") for name, value in (headers or [])}
