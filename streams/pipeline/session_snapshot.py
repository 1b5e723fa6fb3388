"""What the dashboard's customer page shows of a live session: a small snapshot per touched customer,
kept in Redis (``session:{user_id}``) for as long as the session can last."""

from __future__ import annotations

import msgspec

from streams.pipeline.batch import BatchState

RECENT_SHOWN = 10


class SessionSnapshot(msgspec.Struct):
    session_id: str
    started: float
    last_seen: float
    events: int
    recent_items: list[str]  # most recent last
    cart: list[str]
    bought_this_session: list[str]
    segment: str
    dismissed: list[str]


_encode = msgspec.json.Encoder().encode


class SnapshotSessions:
    def __call__(self, batch: BatchState) -> None:
        for user_id, touched in batch.touched.items():
            f = touched.features
            batch.session_snapshots[user_id] = _encode(SessionSnapshot(
                f.session_id, f.session_started, f.last_seen, f.session_events, f.recent_items[-RECENT_SHOWN:],
                f.cart, f.purchased_this_session, f.segment, sorted(f.dismissed)))
