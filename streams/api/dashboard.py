"""The figures the monitoring dashboard draws, gathered from Redis and the trainer's reports."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import redis.asyncio as aioredis

from streams import redis_keys
from streams.dashboard_feed import decode_sizes, fresh_windows, stream_report
from streams.experiment_report import report
from streams.experiments import CURRENT, decode_experiment, decode_outcomes, queue_outcome_reads
from streams.recommendation_store import decode_list
from streams.settings import Settings

TIMELINE_POINTS = 360  # the last hour at one snapshot per 10 s
# Reports the trainer writes into REPORT_DIR that the dashboard links to, if present.
REPORT_LINKS = {
    "eda/eda.html": "Exploratory data analysis",
    "evaluation.md": "Offline evaluation (Markdown)",
    "segments/segments.png": "Customer segments",
    "segments/online_segments_ari.png": "Online vs offline segments (ARI)",
    "prequential.json": "Prequential evaluation (JSON)",
}


class ReportFile:
    """A JSON report read again only when the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[float, object] | None = None

    def read(self):
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if self._seen is None or self._seen[0] != mtime:
            try:
                self._seen = (mtime, json.loads(self.path.read_text()))
            except (OSError, ValueError):
                return None
        return self._seen[1]


class Dashboard:
    def __init__(self, settings: Settings, client: aioredis.Redis, step_seconds: float):
        self.client = client
        self.step_seconds = step_seconds
        self.report_dir = Path(settings.report_dir)
        self.evaluation = ReportFile(self.report_dir / "evaluation.json")
        self._experiment: tuple[float, bytes, dict] | None = None  # (when, the record, its report)

    async def data(self) -> dict:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(redis_keys.WINDOW_STATS)
        pipe.lrange(redis_keys.TIMELINE, 0, TIMELINE_POINTS - 1)
        pipe.hgetall(redis_keys.SEGMENT_SIZES)
        pipe.hgetall(redis_keys.EVENT_STATS)
        pipe.get(redis_keys.POPULAR)
        window, timeline, sizes, events, popular = await pipe.execute()
        experiment = await self.experiment()
        now = time.time()
        return {
            "generated_at": now,
            "window": stream_report(fresh_windows(window, now, self.step_seconds), now),
            "timeline": [json.loads(entry) for entry in reversed(timeline)],
            "segments": decode_sizes(sizes),
            "events": {name.decode(): int(count) for name, count in events.items()},
            "model_version": decode_list(popular).model_version if popular else None,
            "evaluation": self.evaluation.read(),
            "experiment": experiment,
            "reports": self.reports(),
        }

    async def experiment(self) -> dict | None:
        """The current (or last) experiment's report, computed off the event loop: scipy's tests over
        every exposed customer take milliseconds to seconds. Every page polls this, so a report is
        reused for one step of the stream's timeline unless the experiment itself changed."""
        raw = await self.client.get(CURRENT)
        if raw is None:
            return None
        now = time.monotonic()
        if self._experiment is not None and self._experiment[1] == raw and now - self._experiment[0] < self.step_seconds:
            return self._experiment[2]
        experiment = decode_experiment(raw)
        answers = await queue_outcome_reads(self.client.pipeline(transaction=False), experiment).execute()
        summary = await asyncio.to_thread(report, experiment, decode_outcomes(answers))
        self._experiment = (now, raw, summary)
        return summary

    def reports(self) -> list[dict]:
        """Links to the reports the trainer has written so far."""
        return [{"href": f"/reports/{path}", "title": title} for path, title in REPORT_LINKS.items()
                if (self.report_dir / path).is_file()]
