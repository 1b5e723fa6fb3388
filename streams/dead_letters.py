"""Dead-letter records: the original bytes, untouched, with why they were refused.

The value is the payload exactly as received; the reason and its origin travel
in Kafka headers, as Kafka Connect's dead-letter queues do, so nothing about
the bad event is lost or re-encoded.
"""

from __future__ import annotations

import time

REASON = "dlq.reason"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
REFUSED_AT = "dlq.refused.at"


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
