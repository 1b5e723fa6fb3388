"""One settings object for every role, read from the environment.

Each field maps to an upper-case environment variable of the same name
(``redis_url`` <- ``REDIS_URL``). The README documents every one of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

from models.offline_lists import RerankWeights


class SettingsError(ValueError):
    """A setting has a value the product cannot use; the message is one line."""


def _default_data_dir() -> str:
    shared = Path("../shared/data")
    return str(shared) if shared.is_dir() else "data"


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "recsys")


BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
# Settings where an empty value switches a feature off rather than meaning "unset".
EMPTY_MEANS_OFF = frozenset({"archive_dir"})


# Settings whose values are secrets: never printed, logged or shown in errors.
SECRETS = frozenset({"kafka_sasl_password", "redis_password", "api_key"})
TRAIN_ENGINES = ("local", "spark")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, repr=False)
class Settings:
    # Where the servers are. Unset means "the local stack if one is up, else localhost".
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Security (README, "Security"): TLS and credentials for Kafka and Redis.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_ca_file: str = ""
    # How long the worker's consumer lets the broker hold a fetch with nothing new (streams.kafka_transport).
    kafka_fetch_max_wait_ms: int = 20
    redis_password: str = ""
    redis_tls_ca_file: str = ""

    data_dir: str = field(default_factory=_default_data_dir)
    stack_state_dir: str = field(default_factory=_default_state_dir)
    artifact_dir: str = "artifacts"
    archive_dir: str = "archive"
    report_dir: str = "reports"

    # The trainer's engine: local (one process) or spark (offline.spark), with Spark's master URL and
    # extra Spark configuration as comma-separated key=value pairs.
    train_engine: str = "local"
    spark_master: str = "local[*]"
    spark_conf: str = ""

    # Topics of the event contract.
    topic_clicks: str = "clicks"
    topic_purchases: str = "purchases"
    topic_products: str = "products"
    topic_dead_letters: str = "dead-letters"
    topic_model_updates: str = "model-updates"
    topic_feedback: str = "rec-feedback"
    topic_retrain_requests: str = "retrain-requested"
    topic_drift_alerts: str = "drift-alerts"
    topic_online_metrics: str = "online-metrics"
    topic_partitions: int = 4
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1

    # Worker.
    app_id: str = "recsys-worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    worker_batch_size: int = 500
    # Where session state lives between restarts: rocksdb:// (on disk under the state directory,
    # so a restart reads only the changelog's tail) or memory:// (the whole changelog is replayed).
    worker_store: str = "rocksdb://"

    # The storefront API and dashboard (recsys api).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The key that routes which write (POST /events) require; unset, those routes are off.
    api_key: str = ""
    worker_batch_window_seconds: float = 0.05
    log_level: str = "info"

    # Session features.
    session_gap_seconds: float = 1800.0
    session_recent_items: int = 20
    # How long an item the customer dismissed stays out of their lists.
    dismiss_days: float = 30.0

    # Recommendations written to Redis.
    recs_count: int = 20
    # Give every item of every list its reason (models.explanations); off saves the worker that work.
    explain_lists: bool = True
    recs_ttl_seconds: int = 7 * 86400
    popularity_half_life_days: float = 7.0
    redis_max_backoff_seconds: float = 5.0
    attribution_window_seconds: float = 1800.0
    online_segments_algorithm: str = "kmeans"
    # Score static vs re-ranked lists before each purchase (recsys prequential turns it on).
    prequential_scoring: bool = False

    # How live context re-ranks offline lists (see models.offline_lists.RerankWeights).
    rerank_session_weight: float = 0.3
    rerank_cart_weight: float = 0.3
    rerank_category_weight: float = 0.0
    rerank_price_weight: float = 0.0

    # Validation limits: events beyond them go to the dead-letter topic.
    max_event_bytes: int = 65536
    # A dead letter keeps at most this much of the original (the rest is cut, its size and sha256 kept).
    max_dead_letter_bytes: int = 262144
    max_future_skew_seconds: float = 300.0
    max_quantity: int = 100_000
    max_unit_price: float = 100_000.0
    max_order_lines: int = 1000

    def __post_init__(self) -> None:
        positive = (
            "topic_partitions", "worker_batch_size", "session_recent_items", "recs_count",
            "recs_ttl_seconds", "max_event_bytes", "max_dead_letter_bytes", "max_quantity", "max_order_lines",
            "session_gap_seconds", "popularity_half_life_days", "dismiss_days", "max_unit_price",
            "worker_batch_window_seconds", "redis_max_backoff_seconds", "attribution_window_seconds",
            "kafka_fetch_max_wait_ms", "topic_replication_factor", "topic_min_insync_replicas",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} must be greater than 0, got {getattr(self, name)}")
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise SettingsError(f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) cannot exceed "
                                f"TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor})")
        for name in ("rerank_session_weight", "rerank_cart_weight", "rerank_category_weight", "rerank_price_weight"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name.upper()} must be 0 or more, got {getattr(self, name)}")
        for name in ("worker_web_port", "api_port"):
            if not 0 < getattr(self, name) < 65536:
                raise SettingsError(f"{name.upper()} must be a TCP port (1-65535), got {getattr(self, name)}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"REDIS_URL must start with redis://, rediss:// or unix://, "
                                f"got {redact_url(self.redis_url)!r}")
        self._check_security()
        if not self.kafka_bootstrap_servers.strip():
            raise SettingsError("KAFKA_BOOTSTRAP_SERVERS must not be empty")
        if self.online_segments_algorithm not in ("kmeans", "dbstream", "clustream"):
            raise SettingsError(f"ONLINE_SEGMENTS_ALGORITHM must be kmeans, dbstream or clustream, "
                                f"got {self.online_segments_algorithm!r}")
        if self.worker_store not in ("rocksdb://", "memory://"):
            raise SettingsError(f"WORKER_STORE must be rocksdb:// or memory://, got {self.worker_store!r}")
        if self.train_engine not in TRAIN_ENGINES:
            raise SettingsError(f"TRAIN_ENGINE must be {' or '.join(TRAIN_ENGINES)}, got {self.train_engine!r}")
        if self.log_level.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise SettingsError(f"LOG_LEVEL must be debug, info, warning, error or critical, got {self.log_level!r}")

    def _check_security(self) -> None:
        if self.kafka_security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                                f"got {self.kafka_security_protocol!r}")
        if self.kafka_security_protocol.startswith("SASL_"):
            if self.kafka_sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise SettingsError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                                    f"got {self.kafka_sasl_mechanism!r}")
            if not (self.kafka_sasl_username and self.kafka_sasl_password):
                raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                                    "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
        for name in ("kafka_ssl_ca_file", "redis_tls_ca_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SettingsError(f"{name.upper()} names {path!r}, which is not a readable file")

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Settings({shown})"

    def redacted(self) -> dict[str, object]:
        """Every setting, with secrets and passwords in URLs masked: what may be printed or logged."""
        return {f.name: ("***" if f.name in SECRETS and getattr(self, f.name) else
                         redact_url(getattr(self, f.name)) if f.name == "redis_url" else getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @property
    def input_topics(self) -> tuple[str, str, str]:
        return (self.topic_clicks, self.topic_purchases, self.topic_products)

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (*self.input_topics, self.topic_dead_letters, self.topic_model_updates, self.topic_feedback,
                self.topic_retrain_requests, self.topic_drift_alerts, self.topic_online_metrics)

    @property
    def rerank_weights(self) -> RerankWeights:
        return RerankWeights(session=self.rerank_session_weight, cart=self.rerank_cart_weight,
                             category=self.rerank_category_weight, price=self.rerank_price_weight)

    @property
    def worker_data_dir(self) -> Path:
        """Where a worker keeps its local table data, outside the working directory: one folder per
        worker (app id and web port: two workers of a group on one host each hold their own)."""
        return Path(self.stack_state_dir) / "worker-data" / f"{self.app_id}-{self.worker_web_port}"

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default: the process environment).

        Kafka and Redis addresses that are not set fall back to the local stack's
        recorded URLs (``recsys stack up``), then to the localhost defaults.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or (raw == "" and f.name not in EMPTY_MEANS_OFF):
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        state_dir = str(values.get("stack_state_dir") or _default_state_dir())
        for name, url in _local_stack_urls(state_dir).items():
            values.setdefault(name, url)
        return cls(**values)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ***."""
    parsed = urlsplit(url)
    if not parsed.password:
        return url
    user = parsed.username or ""
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return urlunsplit(parsed._replace(netloc=f"{user}:***@{host}{port}"))


def _parse(name: str, type_name: object, raw: str) -> object:
    if str(type_name) == "bool":
        flag = raw.strip().lower()
        if flag not in BOOLEANS:
            raise SettingsError(f"{name.upper()} must be true or false, got {raw!r}")
        return BOOLEANS[flag]
    kind = {"int": int, "float": float}.get(str(type_name))
    if kind is None:
        return raw
    try:
        return kind(raw)
    except ValueError:
        shown = "***" if name in SECRETS else repr(raw)
        raise SettingsError(f"{name.upper()} must be a{'n integer' if kind is int else ' number'}, got {shown}") from None


def _local_stack_urls(state_dir: str) -> dict[str, str]:
    """URLs of a running local stack, as recorded by ``recsys stack up``."""
    path = Path(state_dir) / "stack.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    urls = {}
    if "kafka" in state:
        urls["kafka_bootstrap_servers"] = state["kafka"]["url"]
    if "redis" in state:
        urls["redis_url"] = state["redis"]["url"]
    return urls


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce ``settings`` in another process."""
    return {f.name.upper(): str(getattr(settings, f.name)) for f in dataclasses.fields(settings)}
