"""`recsys prequential` end to end on simulated history: a private stack, a trained model, a worker."""

import pandas as pd
import pytest

from offline.prequential_run import run_prequential
from offline.simulator import simulate_history

pytestmark = pytest.mark.integration


def test_prequential_scores_three_lists_for_every_multi_item_order(tmp_path):
    history = simulate_history(n_users=150, days=120, seed=9)
    rows = run_prequential(history, "simulator", str(tmp_path), lambda m: None)
    assert [row["list"] for row in rows if row["customers"] == "all"] == ["static", "session", "session+segments"]
    test = history[history["timestamp"] >= history["timestamp"].max().normalize() - pd.Timedelta(days=30)]
    orders = test.groupby("order_id")["item_id"].nunique()
    # every order with an item left to predict after the visit's first one is scored once per list
    assert rows[0]["purchases"] == rows[1]["purchases"] == (orders > 1).sum()
    for row in rows:
        assert 0 < row["hit_rate@10"] <= 1 and 0 < row["map@10"] <= row["hit_rate@10"]
    assert (tmp_path / "prequential.json").exists()
