"""Offline cost: `recsys train` wall time and peak memory, and how they grow with the data.

Each run is a process of its own, sampled every 0.2 s with psutil: peak memory
is the resident memory of the whole process tree (the hybrid fits its training
windows in worker processes). Runs:

* `recsys train` on the full Online Retail data (no publishing);
* the same training on simulated shops with SCALES times the customers and
  orders of a 1x shop (items fixed, which is where item-item models grow).

Prints a table; writes bench/results/offline_cost.json.

Run: .venv/bin/python bench/offline_cost.py [--scales 1 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from bench_results import save_results

BASE_USERS = 4000  # a shop of Online Retail's size in customers
ITEMS = 1200

SYNTHETIC = """
import sys, time
from offline.simulator import simulate_history
from offline.training import train_all
from offline.model_export import export_files
users = int(sys.argv[1])
history = simulate_history(n_users=users, n_items={items}, days=365, seed=4)
print(f"lines={{len(history)}} orders={{history['order_id'].nunique()}} users={{users}}", flush=True)
export_files(train_all(history, progress=lambda m: None), history, 20)
"""


def measured(command: list[str], env: dict) -> dict:
    """Wall time, peak tree RSS and the first output line of ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{output[-2000:]}")
    # recsys prints "  3.9s history: 4,334 customers, ..."; the simulated runs "lines=... users=...".
    sizes = [re.sub(r"^[\d.]+s\s+", "", line.strip()) for line in output.splitlines()
             if "order lines" in line or "lines=" in line]
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mib": round(peak / 2**20),
            "detail": sizes[0] if sizes else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    console = Console(width=150)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "ARTIFACT_DIR": str(Path(workdir) / "artifacts"), "REPORT_DIR": workdir}
        recsys = str(Path(sys.executable).parent / "recsys")
        rows.append({"run": "recsys train, full Online Retail", **measured([recsys, "train", "--source", "retail"], env)})
        console.print(rows[-1])
        code = SYNTHETIC.format(items=ITEMS)
        for scale in args.scales:
            run = measured([sys.executable, "-c", code, str(BASE_USERS * scale)], env)
            rows.append({"run": f"simulated shop, {scale}x customers ({BASE_USERS * scale:,}, {ITEMS:,} items)", **run})
            console.print(rows[-1])
    table = Table("run", "data", "wall (s)", "peak RSS (MiB)", title="offline training cost, 2 cores")
    for row in rows:
        table.add_row(row["run"], row["detail"][:60], f"{row['seconds']:.0f}", f"{row['peak_rss_mib']:,}")
    console.print(table)
    synthetic = rows[1:]
    if len(synthetic) >= 2:
        first, last = synthetic[0], synthetic[-1]
        console.print(f"{args.scales[-1] // args.scales[0]}x the customers and orders: "
                      f"{last['seconds'] / first['seconds']:.1f}x the time, "
                      f"{last['peak_rss_mib'] / first['peak_rss_mib']:.1f}x the memory")
    save_results("offline_cost", {"rows": rows})


if __name__ == "__main__":
    main()
