"""A throw-away local stack (broker, Redis, topics) and a worker, for the demo and the prequential run."""

from __future__ import annotations

import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis

from streams.local_stack import LocalStack, free_port, stop_pid
from streams.recommendation_store import read_event_stats
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.worker import spawn_worker


class PrivateStack:
    def __init__(self, workdir: Path, settings: Settings):
        self.workdir = workdir
        self.settings = settings
        self.worker: subprocess.Popen | None = None

    def start_worker(self) -> subprocess.Popen:
        self.worker = spawn_worker(self.settings, self.workdir / "worker.log")
        return self.worker


@contextmanager
def private_stack(name: str, **overrides) -> Iterator[PrivateStack]:
    """Start Tansu and Redis on free loopback ports with settings of their own; stop all on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=f"recsys-{name}-"))
    stack = LocalStack(workdir)
    private = None
    try:
        services = stack.up(environ={})
        settings = Settings.from_env().replace(
            kafka_bootstrap_servers=services["kafka"].url, redis_url=services["redis"].url,
            stack_state_dir=str(workdir), worker_web_port=free_port(), app_id=f"recsys-{name}",
            log_level="warning", archive_dir=str(workdir / "archive"), artifact_dir=str(workdir / "artifacts"),
        ).replace(**overrides)
        ensure_topics(settings)
        private = PrivateStack(workdir, settings)
        yield private
    finally:
        if private is not None and private.worker is not None:
            stop_pid(private.worker.pid, grace_seconds=10)
        stack.down()


def wait_until_processed(client: redis.Redis, expected: int, worker: subprocess.Popen, timeout: float) -> int:
    """Block until the worker has accounted for ``expected`` events; return the count seen."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = sum(read_event_stats(client).values())
        if seen >= expected:
            return seen
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        time.sleep(0.25)
    return seen
