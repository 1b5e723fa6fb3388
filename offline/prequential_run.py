"""`recsys prequential`: does the stream add value? Measured through a running worker.

Train on the history before the test window, publish it to a private stack,
warm a worker up on the 30 days before the window (so it knows customers'
recent items and segments), then replay the test window, each step of orders'
clicks processed before the orders themselves, as a worker that keeps up with
live traffic sees them. For every purchase
the worker scores three lists as they stood when the visit began (see
``streams.prequential``); the totals are read back from Redis.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from offline.private_stack import wait_until_processed
from offline.evaluation import default_cut
from offline.private_stack import private_stack
from offline.release import train_and_publish
from offline.replay import replay_visits_in_step
from streams import redis_keys
from streams.connections import redis_client
from streams.prequential import prequential_table
from streams.recommendation_store import read_event_stats

WARM_UP_DAYS = 30


def run_prequential(history: pd.DataFrame, origin: str, report_dir: str, progress) -> list[dict]:
    cut = default_cut(history)
    with private_stack("prequential", archive_dir="", prequential_scoring=True) as stack:
        settings = stack.settings
        train = history[history["timestamp"] < cut]
        version = train_and_publish(settings, train, None, origin, True, progress).version
        worker = stack.start_worker()
        client = redis_client(settings)
        warm = train[train["timestamp"] >= cut - pd.Timedelta(days=WARM_UP_DAYS)]
        test = history[history["timestamp"] >= cut]
        processed = 0
        for name, orders in (("warm-up", warm), ("test window", test)):
            if name == "test window":
                client.delete(redis_keys.PREQUENTIAL_STATS)
            before = processed
            stats = replay_visits_in_step(
                settings, orders, lambda sent: wait_until_processed(client, before + sent, worker, timeout=300))
            processed += sum(stats.sent.values())
            seen = wait_until_processed(client, processed, worker, timeout=300)
            progress(f"{name}: {stats.orders:,} orders replayed in {stats.seconds:.0f} s, "
                     f"worker at {seen:,} of {processed:,} events")
        totals = {k.decode(): float(v) for k, v in client.hgetall(redis_keys.PREQUENTIAL_STATS).items()}
        rows = prequential_table(totals)
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "prequential.json").write_text(json.dumps(
            {"data_source": origin, "cut": str(cut.date()), "model_version": version, "rows": rows,
             "events": read_event_stats(client)}, indent=2))
        return rows
