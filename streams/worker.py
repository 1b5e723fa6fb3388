"""Runs the Faust worker in the foreground, or any ``recsys`` command as a child process (demo, tests)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import faust

from streams.app import create_app
from streams.connections import redis_client
from streams.settings import Settings, redact_url, settings_env
from streams.topic_admin import ensure_topics

log = logging.getLogger(__name__)
REPORT_EVERY_SECONDS = 10.0


def run_worker(settings: Settings) -> None:
    """Wait for Kafka and Redis, then consume until stopped (Ctrl-C / SIGTERM); a failed agent
    exits with ``EXIT_AGENT_FAILED``."""
    logging.basicConfig(level=settings.log_level.upper(), format="[%(asctime)s] [%(levelname)s] %(message)s")
    wait_until_answering(f"Kafka at {settings.kafka_bootstrap_servers}",
                         lambda: ensure_topics(settings, timeout_seconds=5.0))
    wait_until_answering(f"Redis at {redact_url(settings.redis_url)}", lambda: _ping_redis(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=True)
    worker.execute_from_commandline()


def wait_until_answering(service: str, check: Callable[[], object], pause_seconds: float = 1.0) -> None:
    """Call ``check`` until it succeeds, saying every ``REPORT_EVERY_SECONDS`` that the worker is
    still waiting. Nothing is consumed meanwhile, and SIGTERM stops the wait at once."""
    reported = -REPORT_EVERY_SECONDS
    started = time.monotonic()
    while True:
        try:
            check()
        except Exception as exc:  # any failure to answer: wait and retry
            waited = time.monotonic() - started
            if waited - reported >= REPORT_EVERY_SECONDS:
                log.warning("%s does not answer (%s); waiting %.0f s so far, still retrying",
                            service, str(exc)[:200] or type(exc).__name__, waited)
                reported = waited
            time.sleep(pause_seconds)
            continue
        if reported >= 0:
            log.warning("%s answers; starting", service)
        return


def _ping_redis(settings: Settings) -> None:
    client = redis_client(settings)
    try:
        client.ping()
    finally:
        client.close()


def spawn(settings: Settings, command: str, log_path: Path) -> subprocess.Popen:
    """Start ``recsys {command}`` with ``settings`` in a process of its own, logging to ``log_path``."""
    env = {**os.environ, **settings_env(settings)}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "offline.cli", command], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def spawn_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    return spawn(settings, "worker", log_path)
