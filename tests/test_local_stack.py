"""`recsys stack up|down|status` semantics with real servers."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

from offline.private_stack import private_stack
from streams.local_stack import LocalStack, StackError, free_port, is_listening, pid_alive
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_up_starts_both_is_idempotent_and_down_stops_them(tmp_path):
    stack = LocalStack(tmp_path)
    first = stack.up(environ={})
    try:
        assert set(first) == {"kafka", "redis"}
        assert all(s.started_here and pid_alive(s.pid) for s in first.values())
        assert is_listening("127.0.0.1", first["kafka"].port) and is_listening("127.0.0.1", first["redis"].port)
        again = stack.up(environ={})
        assert {n: s.pid for n, s in again.items()} == {n: s.pid for n, s in first.items()}
        assert all(healthy for _, healthy in stack.status())
        # Other commands find the stack through the settings.
        settings = Settings.from_env({"STACK_STATE_DIR": str(tmp_path)})
        assert settings.kafka_bootstrap_servers == first["kafka"].url and settings.redis_url == first["redis"].url
    finally:
        stopped = stack.down()
    assert sorted(stopped) == ["kafka", "redis"]
    assert not any(pid_alive(s.pid) for s in first.values())
    assert stack.status() == [] and stack.down() == []


def test_reachable_servers_from_the_environment_are_adopted_not_stopped(tmp_path, kafka_server, redis_server):
    stack = LocalStack(tmp_path)
    services = stack.up(environ={"KAFKA_BOOTSTRAP_SERVERS": kafka_server.url, "REDIS_URL": redis_server.url})
    assert not any(s.started_here for s in services.values())
    assert stack.down() == []
    assert pid_alive(kafka_server.pid) and pid_alive(redis_server.pid)


def test_unreachable_loopback_address_gets_a_server_on_that_port(tmp_path, redis_server):
    port = free_port()
    stack = LocalStack(tmp_path)
    services = stack.up(environ={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "REDIS_URL": redis_server.url})
    try:
        assert services["kafka"].port == port and services["kafka"].started_here
        assert not services["redis"].started_here
    finally:
        assert stack.down() == ["kafka"]


def test_malformed_address_is_a_clear_error(tmp_path):
    with pytest.raises(StackError, match="is not a host:port address"):
        LocalStack(tmp_path).up(environ={"KAFKA_BOOTSTRAP_SERVERS": "broker:port"})


def test_a_private_stack_removes_its_folder_and_keeps_it_when_the_block_fails():
    with private_stack("folder-removed") as stack:
        done = stack.workdir
        assert (done / "stack.json").exists()
    assert not done.exists()
    with pytest.raises(RuntimeError, match="the demo broke"):
        with private_stack("folder-kept") as stack:
            kept = stack.workdir
            raise RuntimeError("the demo broke")
    try:
        assert kept.is_dir() and (kept / "kafka.log").exists()
    finally:
        shutil.rmtree(kept, ignore_errors=True)


HOLD_A_PRIVATE_STACK = """
import json, time
from offline.private_stack import private_stack
with private_stack("terminated") as stack:
    print(json.dumps({"workdir": str(stack.workdir), "kafka": stack.settings.kafka_bootstrap_servers,
                      "redis": stack.settings.redis_url}), flush=True)
    time.sleep(120)
"""


def test_a_terminated_private_stack_stops_its_servers():
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_PRIVATE_STACK], stdout=subprocess.PIPE, text=True)
    started = json.loads(holder.stdout.readline())
    kafka_port = int(started["kafka"].rsplit(":", 1)[1])
    redis_port = urlparse(started["redis"]).port
    try:
        assert is_listening("127.0.0.1", kafka_port) and is_listening("127.0.0.1", redis_port)
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=60) == 128 + signal.SIGTERM
        assert not is_listening("127.0.0.1", kafka_port) and not is_listening("127.0.0.1", redis_port)
    finally:
        holder.kill()
        LocalStack(Path(started["workdir"])).down()  # whatever the block left running
        shutil.rmtree(started["workdir"], ignore_errors=True)
