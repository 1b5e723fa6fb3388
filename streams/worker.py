"""Runs the Faust worker in the foreground, or any ``recsys`` command as a child process (demo, tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faust

from streams.app import create_app
from streams.settings import Settings, settings_env
from streams.topic_admin import ensure_topics


def run_worker(settings: Settings) -> None:
    """Consume until stopped (Ctrl-C / SIGTERM); a failed agent exits with ``EXIT_AGENT_FAILED``."""
    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=True)
    worker.execute_from_commandline()


def spawn(settings: Settings, command: str, log_path: Path) -> subprocess.Popen:
    """Start ``recsys {command}`` with ``settings`` in a process of its own, logging to ``log_path``."""
    env = {**os.environ, **settings_env(settings)}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "offline.cli", command], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def spawn_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    return spawn(settings, "worker", log_path)
