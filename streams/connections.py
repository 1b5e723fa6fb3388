"""Every client of Kafka and Redis is built here, from the settings: addresses, TLS and credentials.

Three Kafka client libraries are in use (Faust for the worker, aiokafka for
following model updates, kafka-python for the trainer's tools); each gets the
same security options in its own spelling.
"""

from __future__ import annotations

import ssl

import faust
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams.settings import Settings


def bootstrap_servers(settings: Settings) -> list[str]:
    return [server.strip() for server in settings.kafka_bootstrap_servers.split(",") if server.strip()]


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """Verifies the brokers against KAFKA_SSL_CA_FILE (else the system's CAs) when the protocol uses TLS."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)


def _sasl(settings: Settings) -> dict:
    if not settings.kafka_security_protocol.startswith("SASL_"):
        return {}
    return {"sasl_mechanism": settings.kafka_sasl_mechanism, "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password}


def kafka_options(settings: Settings) -> dict:
    """Keyword arguments for kafka-python's producer, consumer and admin client."""
    options = {"bootstrap_servers": bootstrap_servers(settings), "security_protocol": settings.kafka_security_protocol,
               **_sasl(settings)}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    return options


def aiokafka_options(settings: Settings) -> dict:
    """Keyword arguments for aiokafka's consumer and producer."""
    return {"bootstrap_servers": bootstrap_servers(settings), "security_protocol": settings.kafka_security_protocol,
            "ssl_context": kafka_ssl_context(settings), **_sasl(settings)}


def faust_broker_options(settings: Settings) -> dict:
    """``broker`` and ``broker_credentials`` for ``faust.App``."""
    options: dict = {"broker": [f"kafka://{server}" for server in bootstrap_servers(settings)]}
    context = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options


def _redis_options(settings: Settings) -> dict:
    options: dict = {"socket_timeout": 5, "socket_connect_timeout": 5}
    if settings.redis_password:
        options["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://") and settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = settings.redis_tls_ca_file
    return options


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **_redis_options(settings))


def async_redis_client(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool makes a burst wait for a free connection instead of failing, and
    which retries a command once on a fresh connection when a pooled one was dropped (after a
    Redis restart every pooled connection is stale)."""
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=max_connections, timeout=5,
                                                    retry=Retry(NoBackoff(), 1),
                                                    retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                                                    **_redis_options(settings))
    return aioredis.Redis(connection_pool=pool)
