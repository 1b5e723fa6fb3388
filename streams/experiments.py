"""Experiments between model versions or serving settings, as every worker and the API see them.

An experiment is one JSON record in Redis (``experiment:current``): its name and arms, each arm
a model version (or ``latest``) with optional re-ranking settings and a share of the customers.
Customers are assigned to arms for good by a hash of (experiment, user_id): no table to keep, and
every worker agrees. Workers write each customer's lists with their arm's model; the arm travels
on the list, on rec-feedback and in per-customer outcome hashes (``experiment:{name}:{outcome}``)
that ``recsys experiment report`` reads.
"""

from __future__ import annotations

import hashlib
import re
import time

import msgspec
import redis

from streams.settings import Settings, SettingsError

CURRENT = "experiment:current"
#: Per-customer outcomes, each a hash user_id -> amount: lists written, lists with a credited
#: click, purchases, purchases with an item from the served list, revenue.
OUTCOMES = ("lists", "clicked", "purchases", "hits", "revenue")
# Serving settings an arm may change (the rest are the deployment's).
ARM_SETTINGS = ("rerank_session_weight", "rerank_cart_weight", "rerank_category_weight", "rerank_price_weight")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class ExperimentError(ValueError):
    """An experiment definition the product cannot run; the message is one line."""


class Arm(msgspec.Struct, frozen=True):
    name: str
    version: str = "latest"
    settings: dict[str, float] = {}
    weight: float = 50.0

    def serving_settings(self, base: Settings) -> Settings:
        return base.replace(**self.settings)


class Experiment(msgspec.Struct, frozen=True):
    name: str
    arms: list[Arm]
    started_at: float
    stopped_at: float | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    def arm_of(self, user_id: str) -> Arm:
        """The customer's arm, the same on every worker and for the experiment's whole life."""
        digest = hashlib.blake2b(f"{self.name}\0{user_id}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2 ** 64 * sum(arm.weight for arm in self.arms)
        for arm in self.arms:
            point -= arm.weight
            if point < 0:
                return arm
        return self.arms[-1]


def parse_arm(text: str) -> Arm:
    """``NAME=SPEC:WEIGHT``; SPEC is a model version (or ``latest``), optionally followed by
    comma-separated serving settings, e.g. ``B=latest,RERANK_SESSION_WEIGHT=0.6:50``."""
    name, equals, rest = text.partition("=")
    spec, colon, weight = rest.rpartition(":")
    if not equals or not colon or not _NAME.fullmatch(name):
        raise ExperimentError(f"an arm is NAME=VERSION_OR_SETTINGS:WEIGHT with a name of letters, digits, . _ -; "
                              f"got {text[:80]!r}")
    try:
        share = float(weight)
    except ValueError:
        raise ExperimentError(f"arm {name}: the weight must be a number, got {weight[:20]!r}") from None
    if not share > 0:
        raise ExperimentError(f"arm {name}: the weight must be greater than 0")
    version, settings = "latest", {}
    for token in filter(None, (part.strip() for part in spec.split(","))):
        key, is_setting, value = token.partition("=")
        if not is_setting:
            version = token
            continue
        field = key.strip().lower()
        if field not in ARM_SETTINGS:
            raise ExperimentError(f"arm {name}: {key[:40]} cannot differ between arms; "
                                  f"use {', '.join(s.upper() for s in ARM_SETTINGS)}")
        try:
            settings[field] = float(value)
        except ValueError:
            raise ExperimentError(f"arm {name}: {key[:40]} must be a number") from None
    return Arm(name, version, settings, share)


def new_experiment(name: str, arms: list[Arm], base: Settings) -> Experiment:
    if not _NAME.fullmatch(name):
        raise ExperimentError("the experiment's name must be 1-40 letters, digits, . _ or -")
    if len(arms) < 2 or len({arm.name for arm in arms}) != len(arms):
        raise ExperimentError("an experiment needs two or more arms with distinct names")
    for arm in arms:
        try:
            arm.serving_settings(base)
        except SettingsError as exc:
            raise ExperimentError(f"arm {arm.name}: {exc}") from None
    return Experiment(name, arms, time.time())


_decode = msgspec.json.Decoder(Experiment).decode


def outcome_key(experiment: str, outcome: str) -> str:
    return f"experiment:{experiment}:{outcome}"


def read_experiment(client: redis.Redis) -> Experiment | None:
    raw = client.get(CURRENT)
    return _decode(raw) if raw else None


def decode_experiment(raw: bytes | None) -> Experiment | None:
    return _decode(raw) if raw else None


def start_experiment(client: redis.Redis, experiment: Experiment) -> None:
    """Store ``experiment`` for every worker and the API; refused while another one runs, or when
    one of that name ran before (its outcomes would mix)."""
    current = read_experiment(client)
    if current is not None and current.running:
        raise ExperimentError(f"experiment {current.name} is running; `recsys experiment stop` ends it first")
    if any(client.exists(outcome_key(experiment.name, outcome)) for outcome in OUTCOMES):
        raise ExperimentError(f"an experiment named {experiment.name} ran before; choose another name")
    client.set(CURRENT, msgspec.json.encode(experiment))


def stop_experiment(client: redis.Redis) -> Experiment:
    """Every customer gets the deployed model again from their next event; the outcomes stay for the report."""
    current = read_experiment(client)
    if current is None or not current.running:
        raise ExperimentError("no experiment is running")
    stopped = msgspec.structs.replace(current, stopped_at=time.time())
    client.set(CURRENT, msgspec.json.encode(stopped))
    return stopped


def queue_outcome_reads(pipe, experiment: Experiment):
    """Queue on a Redis pipeline (sync or async) the reads ``decode_outcomes`` takes the answers of."""
    for outcome in OUTCOMES:
        pipe.hgetall(outcome_key(experiment.name, outcome))
    return pipe


def decode_outcomes(answers: list[dict]) -> dict[str, dict[str, float]]:
    """outcome -> {user_id: amount}, for every customer the experiment reached."""
    return {outcome: {user.decode(): float(amount) for user, amount in values.items()}
            for outcome, values in zip(OUTCOMES, answers)}


def read_outcomes(client: redis.Redis, experiment: Experiment) -> dict[str, dict[str, float]]:
    return decode_outcomes(queue_outcome_reads(client.pipeline(transaction=False), experiment).execute())
