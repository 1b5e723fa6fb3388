"""What one batch accumulates on its way through the stages, and the model the batch is served by."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

from models.base import Context, Recommender
from streams.events import DriftAlert, FeedbackEvent, ProductRecord, RetrainRequest, UserEvent
from streams.experiments import Experiment
from streams.log_positions import Position, advanced, is_behind, source_of
from streams.online_summaries import BatchSummaries
from streams.outbox import Message
from streams.recommendation_store import RecommendationList
from streams.session_features import SessionFeatures
from streams.version_fence import fence_of


class Decoded(NamedTuple):
    message: Message
    event: UserEvent | ProductRecord
    items: list[str]  # the items it names


class ArmModel(NamedTuple):
    recommender: Recommender
    version: str
    arm: str = ""  # the experiment arm it serves, "" outside experiments


@dataclass
class ServingModel:
    """The model lists are ranked with; every stage holds the same one, swapped between batches.
    While an experiment runs, each customer's lists come from their arm's model instead."""

    recommender: Recommender
    version: str
    offline_segments: dict[str, str] = field(default_factory=dict)  # user_id -> segment name
    experiment: Experiment | None = None
    arms: dict[str, ArmModel] = field(default_factory=dict)  # arm name -> its model

    @property
    def fence(self) -> str:
        return fence_of(self.version)

    @property
    def recommenders(self) -> list[Recommender]:
        """Every model in use, each once: what learns from events and catalog records."""
        return list({id(r): r for r in (self.recommender, *(arm.recommender for arm in self.arms.values()))}.values())

    def for_customer(self, user_id: str) -> ArmModel:
        if self.experiment is None:
            return ArmModel(self.recommender, self.version)
        return self.arms[self.experiment.arm_of(user_id).name]


class Ranked(NamedTuple):
    """A list as it was made: what the explain stage needs to give each item its reason."""

    listing: RecommendationList
    recommender: Recommender
    context: Context
    slot: str  # recs, buyagain or discover


@dataclass
class TouchedCustomer:
    features: SessionFeatures
    answered_ts: float  # newest event time of the batch's events
    kafka_ts: float  # earliest Kafka time of the batch's events
    positions: dict[str, Position] = field(default_factory=dict)  # "topic:partition" -> last applied


@dataclass
class BatchState:
    """One batch, from its messages to what is written and sent.

    ``counted`` holds, per topic partition, the position up to which Redis already has the
    effects (counters, feedback, dead letters): a batch redelivered after a crash folds what the
    session features lack, but its effects go to a scratch batch that is never written."""

    messages: Sequence[Message] = ()
    counted: dict[str, Position] = field(default_factory=dict)
    scratch: bool = False
    skipped: dict[tuple[str, int, int], int] = field(default_factory=dict)  # crash-loop breaker's verdict
    valid: list[Decoded] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    refused: list[tuple[Message, str]] = field(default_factory=list)  # to dead-letter, with the reason
    summaries: BatchSummaries = field(default_factory=BatchSummaries)
    touched: dict[str, TouchedCustomer] = field(default_factory=dict)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    clicked_lists: list[FeedbackEvent] = field(default_factory=list)  # a served list's first credited click
    retrain: RetrainRequest | None = None
    alerts: list[DriftAlert] = field(default_factory=list)
    prequential: Counter = field(default_factory=Counter)
    segments: dict[str, str] = field(default_factory=dict)
    segment_moves: Counter = field(default_factory=Counter)
    lists: list[RecommendationList] = field(default_factory=list)
    slot_lists: list[tuple[str, RecommendationList]] = field(default_factory=list)
    popular: RecommendationList | None = None
    ranked: list[Ranked] = field(default_factory=list)  # every list above, with how it was made
    products: list[tuple[str, bytes]] = field(default_factory=list)  # (item_id, catalog record)
    dismissals: dict[str, dict[str, float]] = field(default_factory=dict)  # user_id -> {item: shown again after}
    session_snapshots: dict[str, bytes] = field(default_factory=dict)  # user_id -> the dashboard's view of it
    # (experiment, outcome) -> {user_id: amount}: what the experiment's customers did (streams.experiments)
    experiment_outcomes: dict[tuple[str, str], Counter] = field(default_factory=dict)

    def experiment_outcome(self, experiment: str, outcome: str, user_id: str, amount: float = 1) -> None:
        self.experiment_outcomes.setdefault((experiment, outcome), Counter())[user_id] += amount

    def effects_of(self, message: Message) -> "BatchState":
        """Where ``message``'s effects go: this batch, or for one already counted, a scratch batch."""
        if not is_behind(message, self.counted.get(source_of(message))):
            return self
        return BatchState(scratch=True)

    def refuse(self, message: Message, reason: str) -> None:
        """Count ``message`` as a dead letter and queue it to be sent before the batch is written,
        unless Redis counted it before a crash: then it was sent too."""
        effects = self.effects_of(message)
        effects.counters[f"dead_letter:{message.topic}"] += 1
        effects.refused.append((message, reason))

    def positions_after(self) -> dict[str, Position]:
        """Each topic partition's position once the batch is written. Never moved back: a
        partition read again from its start stays counted."""
        last: dict[str, Position] = {}
        for message in self.messages:
            source = source_of(message)
            last[source] = advanced(last.get(source, self.counted.get(source)), message)
        return last

    def touch(self, event: UserEvent, features: SessionFeatures, message: Message, applied: bool) -> None:
        """``event``'s customer needs a new list; ``applied``: the features now hold ``message``."""
        known = self.touched.get(event.user_id)
        if known is None:
            known = self.touched[event.user_id] = TouchedCustomer(features, event.ts, message.timestamp)
        known.features = features
        known.answered_ts, known.kafka_ts = max(known.answered_ts, event.ts), min(known.kafka_ts, message.timestamp)
        if applied:
            source = source_of(message)
            known.positions[source] = advanced(known.positions.get(source), message)
