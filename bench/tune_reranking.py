"""Chooses the session re-ranking weights on a validation window, never the test window.

Trains on everything before (test cut - 30 days) and loads the result as a
worker does (artifact, then ``offline_recommender``). Then it replays the 30
days up to the test cut in-process, with session features as the worker keeps
them, and scores the static and re-ranked lists before each purchase for a grid
of weights. The best combination becomes the defaults of the ``RERANK_*_WEIGHT`` settings.

The cart weight is not tuned here: replayed carts are derived from the very
order being scored, so they would leak it.

Run: .venv/bin/python bench/tune_reranking.py
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from models.offline_lists import RerankWeights
from offline.evaluation import default_cut
from offline.history import load_history
from offline.model_export import export_files
from offline.replay import platform_events
from offline.training import train_all
from streams.model_artifacts import ArtifactStore
from streams.model_updates import offline_recommender
from streams.prequential import K, prequential_table, score_purchase
from streams.session_features import update_session_features
from streams.settings import Settings

GRID = {"session": (0.2, 0.3, 0.45), "category": (0.0, 0.25, 0.5, 1.0, 2.0), "price": (0.0, 0.25, 0.5, 1.0)}


def main() -> None:
    settings = Settings.from_env()
    history = load_history(settings.data_dir, "auto", download=False).orders
    validation_cut = default_cut(history) - pd.Timedelta(days=30)
    train = history[history["timestamp"] < validation_cut]
    window = history[(history["timestamp"] >= validation_cut - pd.Timedelta(days=30)) &
                     (history["timestamp"] < validation_cut + pd.Timedelta(days=30))]
    started = time.perf_counter()
    trained = train_all(train, progress=lambda m: None)
    with tempfile.TemporaryDirectory() as store:
        artifact = ArtifactStore(store).write("validation", export_files(trained, train, settings.recs_count), {})
        model = offline_recommender(artifact, settings.recs_count)
    print(f"trained on history before {validation_cut:%Y-%m-%d} in {time.perf_counter() - started:.0f} s")

    events = platform_events(window)
    results = []
    for session, category, price in itertools.product(*GRID.values()):
        model.weights = replace(RerankWeights(), session=session, category=category, price=price)
        totals: Counter = Counter()
        sessions = {}
        for kind, event in events:
            features = sessions.get(event.user_id)
            if kind == "purchases" and event.ts >= validation_cut.timestamp():
                score_purchase(model, features, event, totals, settings.session_gap_seconds)
            sessions[event.user_id], _ = update_session_features(features, event, settings.session_gap_seconds,
                                                                 settings.session_recent_items)
        rows = {r["list"]: r for r in prequential_table(totals) if r["customers"] == "all"}
        results.append({"weights": asdict(model.weights), "static_map": rows["static"]["map@10"],
                        "session_map": rows["session"]["map@10"], "session_hit_rate": rows["session"]["hit_rate@10"],
                        "purchases": rows["session"]["purchases"]})
        print(f"session {session:.2f} category {category:.2f} price {price:.2f}: MAP@{K} "
              f"{rows['session']['map@10']:.4f} hit-rate {rows['session']['hit_rate@10']:.4f} "
              f"(static {rows['static']['map@10']:.4f})", flush=True)
    best = max(results, key=lambda r: r["session_map"])
    print(f"best on validation: {best['weights']} MAP@{K} {best['session_map']:.4f} (static {best['static_map']:.4f})")
    out = Path(__file__).parent / "results" / "tune_reranking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"validation_cut": str(validation_cut.date()), "grid": GRID, "results": results,
                               "best": best}, indent=2))


if __name__ == "__main__":
    main()
