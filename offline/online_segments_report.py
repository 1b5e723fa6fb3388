"""How well incremental (River) segments agree with the offline K-Means segments over a replay.

Orders are replayed in time order through each online clusterer; at regular
checkpoints the adjusted Rand index compares the offline segments (fitted on
the whole history) with two online views: each customer's cluster as assigned
at their latest purchase (what Redis held), and all customers re-assigned by
the model as it stands at the checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from models.online_segments import ALGORITHMS, CustomerStream, OnlineSegments  # noqa: E402


def order_table(history: pd.DataFrame) -> pd.DataFrame:
    orders = history.assign(value=history["quantity"] * history["price"]).groupby("order_id", sort=False).agg(
        user_id=("user_id", "first"), ts=("timestamp", "min"), lines=("item_id", "size"), units=("quantity", "sum"),
        value=("value", "sum"))
    orders["ts"] = (orders["ts"] - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)
    return orders.sort_values("ts", kind="stable")


def replay_agreement(orders: pd.DataFrame, offline: pd.Series, algorithm: str, checkpoints: int = 10) -> dict:
    segments = OnlineSegments(algorithm)
    streams: dict[str, CustomerStream] = {}
    current: dict[str, int] = {}
    curve = []
    marks = {int(len(orders) * k / checkpoints) for k in range(1, checkpoints + 1)}
    started = time.perf_counter()
    for n, (user, ts, lines, units, value) in enumerate(orders[["user_id", "ts", "lines", "units", "value"]]
                                                         .itertuples(index=False), start=1):
        stream = streams.setdefault(user, CustomerStream())
        stream.add_order(ts, lines, units, value)
        current[user] = segments.learn_predict_one(stream.features())
        if user in offline.index:
            segments.observe_offline(current[user], offline[user])
        if n in marks:
            users = [u for u in current if u in offline.index]
            reassigned = [segments.predict_one(streams[u].features()) for u in users]
            curve.append({"orders": n, "customers": len(users),
                          "ari": round(adjusted_rand_score(offline[users], reassigned), 4),
                          "ari_at_purchase": round(adjusted_rand_score(offline[users], [current[u] for u in users]), 4)})
    return {"algorithm": algorithm, "curve": curve, "final_ari": curve[-1]["ari"],
            "clusters": len(set(current.values())), "seconds": round(time.perf_counter() - started, 1)}


def write_online_segments_report(history: pd.DataFrame, offline: pd.Series, out_dir: str | Path) -> dict:
    orders = order_table(history)
    results = [replay_agreement(orders, offline, algorithm) for algorithm in ALGORITHMS]
    best = max(results, key=lambda r: r["final_ari"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for result in results:
        ax.plot([p["orders"] for p in result["curve"]], [p["ari"] for p in result["curve"]], marker="o",
                label=f"{result['algorithm']} (final {result['final_ari']:.3f})")
    ax.set(xlabel="orders replayed", ylabel="ARI vs offline K-Means (customers re-assigned)",
           title="Online (River) vs offline segments over the replay")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "online_segments_ari.png", dpi=110)
    plt.close(fig)
    report = {"orders": len(orders), "customers": int(orders["user_id"].nunique()), "chosen": best["algorithm"],
              "results": results}
    (out / "online_segments_ari.json").write_text(json.dumps(report, indent=2))
    return report
