"""How an agent or task that fails ends the worker: at once, before its batch is committed."""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger(__name__)

# Exit status of a worker whose agent failed (sysexits' EX_SOFTWARE): its supervisor restarts it.
EXIT_AGENT_FAILED = 70


def exit_on_failure(name: str):
    """Decorate an agent or task so that a failure ends the worker at once, as a crash would.

    Faust would otherwise restart the agent past the failed batch, and ``take_events``
    acknowledges a batch when its generator closes, so the failed batch would be
    committed unprocessed. Exiting before the event loop runs again leaves it
    uncommitted: the restarted worker receives it again, and anything of it that
    already reached the session changelog is recognised by event id.
    """

    def decorate(body):
        @functools.wraps(body)
        async def run(*args):
            try:
                await body(*args)
            except Exception as exc:
                log.critical("%s failed: %r; exiting so that the batch is redelivered", name, exc, exc_info=exc)
                logging.shutdown()
                os._exit(EXIT_AGENT_FAILED)

        return run

    return decorate
