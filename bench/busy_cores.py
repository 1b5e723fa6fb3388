"""The trainer on a machine whose cores other processes keep busy (a worker beside it, a test run).

LightGBM (the hybrid's rankers), implicit and scikit-learn share one OpenMP runtime (GNU's),
whose idle threads spin ``GOMP_SPINCOUNT`` times before they sleep, read when the runtime loads:
300,000 by default, 20,000 as ``models`` sets it unless the environment says otherwise. Each run
learns one hybrid ranker, as validation does (200,000 labelled candidates of 40 features), in a
process of its own, at each spin count, on an idle machine and beside one busy process per core.
Prints each run's wall time and its ratio to the idle machine's at the runtime's default;
writes bench/results/busy_cores.json.

Run: .venv/bin/python bench/busy_cores.py [--limit 120]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench_results import save_results

ROOT = Path(__file__).resolve().parents[1]
LEARN_ONE_RANKER = """
import numpy as np
from models.hybrid import new_ranker
rng = np.random.default_rng(0)
features = rng.random((200_000, 40), dtype=np.float32)
new_ranker().fit(features, rng.random(len(features)) < 0.05)
"""


def busy() -> None:
    while True:
        pass


SPIN_COUNTS = {"300000": "the runtime's default", "20000": "the trainer's", "0": "none (threads sleep at once)"}


def learn_one_ranker(spins: str, limit: float) -> float | None:
    """Seconds to learn one ranker with OpenMP's idle threads spinning ``spins`` times; None past ``limit``."""
    env = {**os.environ, "GOMP_SPINCOUNT": spins, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", LEARN_ONE_RANKER], env=env, check=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=float, default=120.0, help="seconds after which a run is stopped")
    args = parser.parse_args()
    runs: dict[str, float | None] = {}
    for machine in ("idle", "busy"):
        hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(os.cpu_count() or 1)
                if machine == "busy"]
        for hog in hogs:
            hog.start()
        try:
            for spins, meaning in SPIN_COUNTS.items():
                runs[f"{machine}, {spins} spins: {meaning}"] = learn_one_ranker(spins, args.limit)
        finally:
            for hog in hogs:
                hog.terminate()
    baseline = runs["idle, 300000 spins: the runtime's default"]
    table = Table("machine, spins of an idle OpenMP thread", "seconds", "x idle, default",
                  title=f"one ranker learned, {os.cpu_count()} cores")
    for name, seconds in runs.items():
        shown = f"> {args.limit:.0f}" if seconds is None else f"{seconds:.1f}"
        ratio = f"> {args.limit / baseline:.0f}" if seconds is None else f"{seconds / baseline:.2f}"
        table.add_row(name, shown, ratio)
    Console().print(table)
    save_results("busy_cores", {"cores": os.cpu_count(), "limit_seconds": args.limit, "seconds": runs})


if __name__ == "__main__":
    main()
