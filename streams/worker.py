"""Runs the Faust worker in the foreground until it is stopped (Ctrl-C / SIGTERM)."""

from __future__ import annotations

import faust

from streams.app import create_app
from streams.settings import Settings
from streams.topic_admin import ensure_topics


def run_worker(settings: Settings) -> None:
    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), override_logging=True)
    worker.execute_from_commandline()
