"""Where a worker is in each topic partition's log: what it has already applied or counted.

A position is the last offset and the newest Kafka timestamp seen. A message is behind a
position when both its offset and its timestamp are: a redelivery has the same offset
and timestamp as before, while a log that started over (a topic recreated, a broker that
lost its data) restarts its offsets but not its clock, so its new messages are not
mistaken for ones already seen.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Protocol, Sequence


class Located(Protocol):
    topic: str
    partition: int
    offset: int
    timestamp: float


class Position(NamedTuple):
    offset: int
    timestamp: float

    def encode(self) -> str:
        return f"{self.offset}:{self.timestamp:.3f}"

    @classmethod
    def decode(cls, raw: bytes | str) -> "Position":
        offset, timestamp = (raw.decode() if isinstance(raw, bytes) else raw).split(":")
        return cls(int(offset), float(timestamp))


def source_of(message: Located) -> str:
    return f"{message.topic}:{message.partition}"


def is_behind(message: Located, position: Position | tuple | None) -> bool:
    return position is not None and message.offset <= position[0] and message.timestamp <= position[1]


def advanced(position: Position | tuple | None, message: Located) -> Position:
    """``position`` moved on to include ``message``; never moved back within one log. A message
    at a lower offset but a later time is the start of a log that started over: the position
    begins again from it."""
    if position is None or (message.offset < position[0] and message.timestamp > position[1]):
        return Position(message.offset, message.timestamp)
    return Position(max(position[0], message.offset), max(position[1], message.timestamp))


def distinct(messages: Sequence[Located]) -> list[Located]:
    """``messages`` with each record once (a consumer that sought back during a rebalance can hand
    over the same record twice in one batch), in the order first seen."""
    seen: set[tuple[str, int, float]] = set()
    once = []
    for message in messages:
        key = (source_of(message), message.offset, message.timestamp)
        if key not in seen:
            seen.add(key)
            once.append(message)
    return once


def missing_ranges(messages: Sequence[Located], counted: Mapping[str, Position]) -> dict[str, list[tuple[int, int]]]:
    """Per source, the offset ranges (first, last) that lie between the position counted and the
    messages at hand, or between two of them, without a message. A source with no position counted
    yet is measured from its first message; one whose log started over, from offset 0."""
    by_source: dict[str, list[Located]] = {}
    for message in messages:
        by_source.setdefault(source_of(message), []).append(message)
    missing = {}
    for source, located in by_source.items():
        position = counted.get(source)
        started_over = position is not None and any(
            message.offset < position.offset and message.timestamp > position.timestamp for message in located)
        offsets = sorted({message.offset for message in located})
        previous = -1 if started_over else position.offset if position is not None else offsets[0] - 1
        ranges = []
        for offset in offsets:
            if offset > previous + 1:
                ranges.append((previous + 1, offset - 1))
            previous = max(previous, offset)
        if ranges:
            missing[source] = ranges
    return missing
