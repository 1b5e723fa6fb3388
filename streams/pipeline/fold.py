"""Fold each valid event into its customer's session features, with the hooks that hang off it.

Two questions are kept apart. Do the session features have the event already (its offset, or
its id at another offset)? Has Redis counted it already (``BatchState.effects_of``)? After a
crash either may hold without the other; each event is folded once and counted once.

A hook sees each new event twice: ``before`` the features change (what the customer had been
shown, what they had touched), and ``after``. A hook that fails fails the event, which is then
dead-lettered; the batch goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import MutableMapping, Sequence

from streams.events import FeedbackEvent, UserEvent
from streams.log_positions import is_behind, source_of
from streams.outbox import Message
from streams.pipeline.batch import BatchState, Decoded
from streams.session_features import ServedList, SessionFeatures, load_features, update_session_features
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class FoldStep:
    """One new event on its way into the features, as the hooks see it."""

    message: Message
    event: UserEvent
    items: list[str]
    features: SessionFeatures | None  # before the event; after it, in ``after``
    batch: BatchState  # where the batch's own outputs go (lists, segments)
    effects: BatchState  # where counted effects go: the batch, or a scratch one when Redis has them
    context: list[str]  # the customer's recent items before the event, most recent last
    last_served: ServedList | None  # the list they were shown last before the event
    segment_before: str
    earned: list[FeedbackEvent] = field(default_factory=list)  # feedback the event credits to served lists
    clicked_lists: list[FeedbackEvent] = field(default_factory=list)  # of those, first clicks on their list


class FoldHook:
    """A concern that follows every new event; override what it needs."""

    def before(self, step: FoldStep) -> None:
        pass

    def after(self, step: FoldStep) -> None:
        pass


class Fold:
    def __init__(self, settings: Settings, sessions: MutableMapping[bytes, bytes], hooks: Sequence[FoldHook]):
        self.settings = settings
        self.sessions = sessions
        self.hooks = hooks

    def __call__(self, batch: BatchState) -> None:
        for decoded in batch.valid:
            try:
                self._fold(decoded, batch)
            except Exception as exc:  # one event's failure is that event's: the batch goes on
                message = decoded.message
                log.exception("event at %s[%d]@%d failed", message.topic, message.partition, message.offset)
                batch.refuse(message, f"processing failed: {type(exc).__name__}: {exc}")

    def _fold(self, decoded: Decoded, batch: BatchState) -> None:
        message, event = decoded.message, decoded.event
        known = batch.touched.get(event.user_id)
        features = known.features if known else self._load(event.user_id)
        effects = batch.effects_of(message)
        redelivered = features is not None and is_behind(message, features.positions.get(source_of(message)))
        if redelivered or (features is not None and event.event_id in features.recent_event_ids):
            effects.counters[f"{'valid' if redelivered else 'duplicate'}:{message.topic}"] += 1
            # The features have the event; Redis may not have its list yet.
            batch.touch(event, features, message, applied=False)
            return
        step = FoldStep(message, event, decoded.items, features, batch, effects,
                        context=list(features.recent_items) if features else [],
                        last_served=features.served[-1] if features and features.served else None,
                        segment_before=features.segment if features else "")
        for hook in self.hooks:
            hook.before(step)
        step.features, _ = update_session_features(
            features, event, self.settings.session_gap_seconds, self.settings.session_recent_items,
            self.settings.dismiss_days * 86400
        )
        for hook in self.hooks:
            hook.after(step)
        # Counted only once nothing can fail: a dead-lettered event is never also counted valid.
        effects.counters[f"valid:{message.topic}"] += 1
        effects.feedback += step.earned
        effects.clicked_lists += step.clicked_lists
        batch.touch(event, step.features, message, applied=True)

    def _load(self, user_id: str) -> SessionFeatures | None:
        raw = self.sessions.get(user_id.encode())
        return load_features(raw) if raw else None
