"""A throw-away local stack (broker, Redis, topics) with a worker and the API, for the demo, the
prequential run and the dashboard's browser test."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis

from streams.local_stack import LOOPBACK, LocalStack, free_port, is_listening, stop_pid
from streams.recommendation_store import read_event_stats
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.worker import spawn

log = logging.getLogger(__name__)


class PrivateStack:
    def __init__(self, workdir: Path, settings: Settings):
        self.workdir = workdir
        self.settings = settings
        self.worker: subprocess.Popen | None = None
        self.api: subprocess.Popen | None = None

    def start_worker(self) -> subprocess.Popen:
        self.worker = spawn(self.settings, "worker", self.workdir / "worker.log")
        return self.worker

    def start_api(self, timeout: float = 30.0) -> str:
        """Start the API and dashboard; return its base URL once it answers."""
        self.api = spawn(self.settings, "api", self.workdir / "api.log")
        deadline = time.monotonic() + timeout
        while not is_listening(LOOPBACK, self.settings.api_port):
            if self.api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start; see {self.workdir / 'api.log'}")
            time.sleep(0.1)
        return f"http://{LOOPBACK}:{self.settings.api_port}"


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """A SIGTERM (``kill``, a service manager, a CI timeout) ends the block as an exception
    would, so that what it started is stopped rather than left running. Only the main thread
    may set a signal handler; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def private_stack(name: str, **overrides) -> Iterator[PrivateStack]:
    """Start Tansu and Redis on free loopback ports with settings of their own; stop all on exit,
    SIGTERM included. Its folder (state, logs) is removed afterwards, and kept when the block
    failed or was stopped, for its logs."""
    workdir = Path(tempfile.mkdtemp(prefix=f"recsys-{name}-"))
    stack = LocalStack(workdir)
    private = None
    failed = True
    with _sigterm_as_exit():
        try:
            services = stack.up(environ={})
            settings = Settings.from_env().replace(
                kafka_bootstrap_servers=services["kafka"].url, redis_url=services["redis"].url,
                stack_state_dir=str(workdir), worker_web_port=free_port(), api_port=free_port(), app_id=f"recsys-{name}",
                log_level="warning", archive_dir=str(workdir / "archive"), artifact_dir=str(workdir / "artifacts"),
            ).replace(**overrides)
            ensure_topics(settings)
            private = PrivateStack(workdir, settings)
            yield private
            failed = False
        finally:
            for process in (private.worker, private.api) if private is not None else ():
                if process is not None:
                    stop_pid(process.pid, grace_seconds=10)
            stack.down()
            if failed:
                log.warning("kept %s for its logs", workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


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
