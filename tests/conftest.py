"""Fixtures: real servers (Tansu, Redis) on free loopback ports, and the data flag.

Set RECSYS_REQUIRE_DATA=1 (CI does) to make tests that need the Online Retail
data fail instead of skipping when it is missing, and RECSYS_REQUIRE_BROWSER=1
(CI does) for the browser test and Debian's Chromium.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest
import redis

from offline.retail_history import retail_path
from streams.events import ClickEvent, encode_event, event_key
from streams.local_stack import ServiceRecord, free_port, kafka_command, redis_command, start_server, stop_pid
from streams.recommendation_store import read_recommendations
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def running_worker(settings: Settings, log_path: Path):
    """A ``recsys worker`` process for the block's length, stopped (and reaped) however the block ends."""
    from streams.worker import spawn_worker

    worker = spawn_worker(settings, log_path)
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        finally:
            stop_pid(worker.pid)


def wait_for_arm_lists(producer, settings: Settings, client: redis.Redis, tag: str, timeout: float = 60.0) -> int:
    """A customer of no interest clicks until a list of an experiment arm comes back: the worker
    follows the experiment (it loads its arms within seconds of the start, longer on a busy machine).
    Returns the events sent."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        event = ClickEvent(f"{tag}-warm-{n}", "warm-up", "10001", "view", time.time() - 60)
        producer.send(settings.topic_clicks, key=event_key(event), value=encode_event(event))
        producer.flush()
        time.sleep(1.0)
        listing = read_recommendations(client, "warm-up")
        if listing is not None and listing.arm is not None:
            return n
    raise AssertionError("the worker never served an arm's list")


DATA_DIR = Path(os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data")


def _server(name: str, command, tmp_path_factory) -> ServiceRecord:
    port = free_port()
    log = tmp_path_factory.mktemp(name) / f"{name}.log"
    return start_server(name, command(port), port, log)


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory):
    service = _server("kafka", kafka_command, tmp_path_factory)
    yield service
    stop_pid(service.pid)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    service = _server("redis", redis_command, tmp_path_factory)
    yield service
    stop_pid(service.pid)


@pytest.fixture
def redis_client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def stack_settings(kafka_server, redis_server, redis_client, tmp_path) -> Settings:
    """Settings pointing at the test servers, with topics and group private to one test."""
    run = uuid.uuid4().hex[:8]
    return Settings(
        kafka_bootstrap_servers=kafka_server.url,
        redis_url=redis_server.url,
        stack_state_dir=str(tmp_path / "stack"),
        archive_dir=str(tmp_path / "archive"),
        artifact_dir=str(tmp_path / "artifacts"),
        data_dir=str(DATA_DIR),
        # Every topic private to the test: a test reading feedback or alerts sees only its own.
        **{f.name: f"{f.default}-{run}" for f in dataclasses.fields(Settings) if f.name.startswith("topic_")
           and isinstance(f.default, str)},
        topic_partitions=2,
        app_id=f"recsys-test-{run}",
        worker_web_port=free_port(),
        log_level="warning",
    )


@pytest.fixture(scope="session")
def retail_csv() -> Path:
    path = retail_path(DATA_DIR)
    if not path.exists():
        required_or_skip("RECSYS_REQUIRE_DATA", f"Online Retail data not found at {path}")
    return path


def required_or_skip(flag: str, message: str) -> None:
    if os.environ.get(flag) == "1":
        pytest.fail(f"{message} and {flag}=1")
    pytest.skip(message)


def debian_binary(path: str, flag: str, package: str) -> Path:
    binary = Path(path)
    if not binary.exists():
        required_or_skip(flag, f"{binary} is missing (`make test` installs Debian's {package})")
    return binary


@pytest.fixture(scope="session")
def promtool() -> Path:
    return debian_binary("/usr/bin/promtool", "RECSYS_REQUIRE_PROMTOOL", "prometheus")


@pytest.fixture(scope="session")
def chromium() -> Path:
    return debian_binary("/usr/bin/chromium", "RECSYS_REQUIRE_BROWSER", "chromium")


LEFTOVER_GRACE_SECONDS = 5.0


@pytest.hookimpl(trylast=True)  # after the session's fixtures have stopped their servers
def pytest_sessionfinish(session):
    """A process the tests left running would hold the run's output open, and CI would wait on it
    until its own time ran out. Those still running a few seconds after the last fixture stopped
    are killed, named, and fail the run."""
    children = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(children, timeout=LEFTOVER_GRACE_SECONDS)
    left = []
    for process in alive:
        with suppress(psutil.NoSuchProcess):  # it ended meanwhile
            left.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
            process.kill()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("processes left running by the tests, now killed:\n  " + "\n  ".join(left), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
