"""Periodic retraining (`recsys train --every 6h`), which also honours retrain requests."""

from __future__ import annotations

import re
import time
from typing import Callable

import typer
from rich.console import Console

from streams.settings import Settings

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    match = _INTERVAL.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not an interval like 30m, 6h or 1d", param_hint="--every")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def run_periodically(run: Callable[[], str], interval: float, settings: Settings, console: Console,
                     sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> None:
    """Run, then wait ``interval`` seconds, forever (or ``rounds`` times); a failed round is reported and retried."""
    done = 0
    while rounds is None or done < rounds:
        try:
            version = run()
            console.print(f"trained {version}; next run in {interval:.0f} s")
        except Exception as exc:  # a bad round must not end the schedule
            console.print(f"[red]training failed:[/red] {exc}; retrying in {interval:.0f} s")
        done += 1
        if rounds is None or done < rounds:
            sleep(interval)
