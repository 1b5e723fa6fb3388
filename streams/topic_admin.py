"""Creates the contract's topics so producers and workers agree on partition counts."""

from __future__ import annotations

import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.connections import kafka_options
from streams.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, timeout_seconds: float = 10.0) -> list[str]:
    """Create any missing contract topic; return the names it created."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            remaining_ms = max(int((deadline - time.monotonic()) * 1000), 500)
            admin = KafkaAdminClient(client_id=f"{settings.app_id}-admin", request_timeout_ms=10_000,
                                     bootstrap_timeout_ms=min(remaining_ms, 5_000), **kafka_options(settings))
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise ConnectionError(
                    f"Kafka at {settings.kafka_bootstrap_servers} did not answer within {timeout_seconds:.0f} s "
                    f"({type(exc).__name__}); is it running? `recsys stack up` starts a local one"
                ) from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in settings.all_topics if name not in existing]
        for name in missing:
            try:
                admin.create_topics(
                    [NewTopic(name, num_partitions=settings.topic_partitions,
                              replication_factor=settings.topic_replication_factor,
                              topic_configs={"min.insync.replicas": str(settings.topic_min_insync_replicas)})]
                )
            except TopicAlreadyExistsError:
                pass
        if missing:
            log.info("created topics %s with %d partitions", ", ".join(missing), settings.topic_partitions)
        return missing
    finally:
        admin.close()
