"""Chooses the session re-ranking weights on a validation window, never the test window.

Trains the hybrid on everything before (test cut - 30 days), then replays the
30 days up to the test cut in-process (session features as the worker keeps
them) and scores the static and re-ranked lists before each purchase for a
grid of weights. The best pair becomes the worker's default.

Run: .venv/bin/python bench/tune_reranking.py
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from models.offline_lists import OfflineListsWithSession
from offline.evaluation import default_cut
from offline.history import load_history
from offline.model_export import popular_lists, similar_items, user_lists
from offline.replay import platform_events
from offline.training import train_all
from streams.prequential import K, prequential_table, score_purchase
from streams.session_features import update_session_features
from streams.settings import Settings

GRID_SESSION = (0.0, 0.3, 0.6, 1.0, 2.0)


def main() -> None:
    settings = Settings.from_env()
    history = load_history(settings.data_dir, "auto", download=False).orders
    validation_cut = default_cut(history) - pd.Timedelta(days=30)
    train = history[history["timestamp"] < validation_cut]
    window = history[(history["timestamp"] >= validation_cut - pd.Timedelta(days=30)) &
                     (history["timestamp"] < validation_cut + pd.Timedelta(days=30))]
    started = time.perf_counter()
    trained = train_all(train, progress=lambda m: None)
    lists = user_lists(trained, settings.recs_count)
    similar = similar_items(trained)
    popular = popular_lists(trained, settings.recs_count)
    print(f"trained on history before {validation_cut:%Y-%m-%d} in {time.perf_counter() - started:.0f} s")
    user_map = {u: list(zip(i, map(float, s))) for u, i, s in lists.itertuples(index=False)}
    similar_map = {u: list(zip(i, map(float, s))) for u, i, s in similar.itertuples(index=False)}
    popular_list = [(i, float(s)) for i, s in popular["all"]]

    events = platform_events(window)
    results = []
    for session_weight in GRID_SESSION:
        model = OfflineListsWithSession(user_map, similar_map, popular_list, "validation",
                                        session_weight=session_weight)
        totals: Counter = Counter()
        sessions = {}
        for kind, event in events:
            features = sessions.get(event.user_id)
            if kind == "purchases" and event.ts >= validation_cut.timestamp():
                score_purchase(model, features, event, totals, settings.session_gap_seconds)
            sessions[event.user_id], _ = update_session_features(features, event, settings.session_gap_seconds,
                                                                 settings.session_recent_items)
        rows = {r["list"]: r for r in prequential_table(totals)}
        results.append({"session_weight": session_weight,
                        "static_map": rows["static"]["map@10"], "session_map": rows["session"]["map@10"],
                        "session_hit_rate": rows["session"]["hit_rate@10"], "purchases": rows["session"]["purchases"]})
        print(f"session_weight {session_weight:.1f}: MAP@{K} "
              f"{rows['session']['map@10']:.4f} (static {rows['static']['map@10']:.4f})")
    best = max(results, key=lambda r: r["session_map"])
    print(f"best on validation: session_weight={best['session_weight']}")
    out = Path(__file__).parent / "results" / "tune_reranking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"validation_cut": str(validation_cut.date()), "results": results, "best": best}, indent=2))


if __name__ == "__main__":
    main()
