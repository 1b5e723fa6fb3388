"""Offline cost: training wall time and peak memory, on real data and at catalog scale.

Each run is a process of its own, sampled with psutil: peak memory is its resident size
(every 0.2 s) while it runs alone, and while it has forked processes, the tree's proportional
set sizes summed (every 2 s): pages the export's processes share with the trainer count once. Runs:

* `recsys train` on the full Online Retail data (no publishing);
* training plus export (every customer's three lists, similar items, popular lists)
  on simulated shops with planted structure (``offline.simulator.simulate_catalog``),
  at each ``--points`` INTERACTIONS:ITEMS:CUSTOMERS. The time to generate the data
  is reported apart and not counted as training.

Targets: 1M interactions and 50k items in <= 3 min and <= 4 GB; 10M interactions,
1M customers and 100k items in <= 15 min and <= 12 GB.

Prints a table (wall time of training plus export, the export's share of it, CPU seconds of the
whole run, data generation included, and peak memory); writes bench/results/offline_cost.json.

With ``--engine spark`` each simulated point is written as a folder of Parquet files (not
counted) and trained on the Spark engine (``local[2]``, driver memory ``--spark-memory``): read
on the executors, validated on the driver, every customer's lists written to the artifact; the
peak memory is that of the process tree (the driver's Python, the JVM and its Python workers).

Run: .venv/bin/python bench/offline_cost.py [--points 1000000:50000:100000 10000000:100000:1000000] [--no-retail]
     [--engine local|spark] [--spark-memory 10g]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from bench_results import save_results

LOG = Path(__file__).parent / "results" / "offline_cost.log"
# Reading a large process's PSS walks its page tables: five times a second it took most of a
# core from the run it measured, so a tree of processes is read every two seconds.
PSS_EVERY = 2.0
SYNTHETIC = """
import sys, time
from offline.simulator import simulate_catalog
from offline.training import train_all
from offline.model_export import export_files
lines, items, users = (int(v) for v in sys.argv[1:4])
started = time.perf_counter()
history, catalog = simulate_catalog(users, items, lines, seed=4)
generated = time.perf_counter() - started
print(f"lines={len(history)} customers={history['user_id'].nunique()} items={history['item_id'].nunique()}",
      flush=True)
started = time.perf_counter()
trained = train_all(history, catalog, progress=lambda m: print(f"{time.perf_counter() - started:7.1f}s {m}",
                                                               flush=True))
trained_at = time.perf_counter()
files = export_files(trained, history, 20)
done = time.perf_counter()
print(f"generate_seconds={generated:.1f} export_seconds={done - trained_at:.1f} train_seconds={done - started:.1f}",
      flush=True)
"""
SYNTHETIC_SPARK = """
import sys, time
from pathlib import Path
from offline.simulator import simulate_catalog
from offline.spark.reading import read_interactions
from offline.spark.session import start_spark
from offline.spark.trainer import train_and_publish_on_spark
from streams.settings import Settings
lines, items, users = (int(v) for v in sys.argv[1:4])
folder, memory = Path(sys.argv[4]), sys.argv[5]
started = time.perf_counter()
history, catalog = simulate_catalog(users, items, lines, seed=4)
parts = 16
for n in range(parts):
    history.iloc[n::parts].to_parquet(folder / f"part-{n:03d}.parquet", index=False)
catalog = catalog.reset_index() if "item_id" not in catalog else catalog
del history
generated = time.perf_counter() - started
print(f"lines={lines} customers={users} items={items}", flush=True)
started = time.perf_counter()
spark = start_spark("local[2]", {"spark.driver.memory": memory, "spark.sql.shuffle.partitions": "16"})
step = lambda m: print(f"{time.perf_counter() - started:7.1f}s {m}", flush=True)
release = train_and_publish_on_spark(Settings.from_env(), spark, read_interactions(spark, folder), catalog,
                                     "simulated", False, step)
done = time.perf_counter()
print(f"generate_seconds={generated:.1f} export_seconds={release.seconds.get('export', 0.0):.1f} "
      f"train_seconds={done - started:.1f}", flush=True)
"""


def measured(command: list[str], env: dict) -> dict:
    """Wall time, peak memory (of the process tree) and the first output line of ``command``;
    its output goes on to bench/results/offline_cost.log as it runs."""
    started = time.perf_counter()
    cpu_before = _children_cpu_seconds()
    LOG.parent.mkdir(exist_ok=True)
    log = LOG.open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak, shared_at = 0, 0.0
    while process.poll() is None:
        try:
            tree = [p for p in [root, *root.children(recursive=True)] if p.is_running()]
            if len(tree) == 1:
                peak = max(peak, root.memory_info().rss)
            elif time.monotonic() - shared_at >= PSS_EVERY:
                peak, shared_at = max(peak, sum(_proportional(p) for p in tree)), time.monotonic()
        except psutil.Error:
            pass
        time.sleep(0.2)
    log.close()
    output = LOG.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{output[-2000:]}")
    # recsys prints "  3.9s history: 4,334 customers, ..."; the simulated runs "lines=... customers=...".
    sizes = [re.sub(r"^[\d.]+s\s+", "", line.strip()) for line in output.splitlines()
             if "order lines" in line or "lines=" in line]
    timing = dict(re.findall(r"(\w+_seconds)=([\d.]+)", output))
    seconds = round(time.perf_counter() - started, 1)
    return {"seconds": float(timing.get("train_seconds", seconds)), "generate_seconds": float(timing.get(
            "generate_seconds", 0.0)), "export_seconds": float(timing.get("export_seconds", 0.0)),
            "cpu_seconds": round(_children_cpu_seconds() - cpu_before, 1), "peak_memory_mib": round(peak / 2**20),
            "detail": sizes[0] if sizes else "", "log": output.splitlines()[-40:]}


def _proportional(process: psutil.Process) -> int:
    """The process's proportional set size: its own pages, plus its share of those it shares.
    The export's forked processes share the trainer's models; summing their resident sizes
    would count those pages once per process. Resident size where the system has no PSS."""
    try:
        return process.memory_full_info().pss
    except (AttributeError, psutil.AccessDenied):
        return process.memory_info().rss


def _children_cpu_seconds() -> float:
    """User + system CPU time of the finished child processes: steadier than wall time on a
    machine whose neighbours take a varying share of the cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", default=["1000000:50000:100000", "10000000:100000:1000000"])
    parser.add_argument("--no-retail", dest="retail", action="store_false")
    parser.add_argument("--engine", choices=["local", "spark"], default="local")
    parser.add_argument("--spark-memory", default="10g", help="the Spark driver's heap (local[2]: executors share it)")
    args = parser.parse_args()
    console = Console(width=150)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "ARTIFACT_DIR": str(Path(workdir) / "artifacts"), "REPORT_DIR": workdir}
        if args.retail:
            recsys = str(Path(sys.executable).parent / "recsys")
            rows.append({"run": "recsys train, full Online Retail",
                         **measured([recsys, "train", "--source", "retail"], env)})
            console.print({k: v for k, v in rows[-1].items() if k != "log"})
        for point in args.points:
            lines, items, users = point.split(":")
            if args.engine == "spark":
                folder = Path(tempfile.mkdtemp(dir=workdir))
                run = measured([sys.executable, "-c", SYNTHETIC_SPARK, lines, items, users, str(folder),
                                args.spark_memory], env)
            else:
                run = measured([sys.executable, "-c", SYNTHETIC, lines, items, users], env)
            rows.append({"run": f"simulated: {int(lines):,} interactions, {int(items):,} items, "
                                f"{int(users):,} customers ({args.engine} engine)", **run})
            console.print({k: v for k, v in rows[-1].items() if k != "log"})
            console.print("\n".join(run["log"][-25:]))
    table = Table("run", "data", "train + export wall (s)", "of which export (s)", "CPU (s)",
                  "peak memory (MiB)", title="offline training cost, 2 cores")
    for row in rows:
        table.add_row(row["run"], row["detail"][:60], f"{row['seconds']:.0f}", f"{row['export_seconds']:.0f}",
                      f"{row['cpu_seconds']:.0f}", f"{row['peak_memory_mib']:,}")
    console.print(table)
    save_results("offline_cost", {"rows": rows})


if __name__ == "__main__":
    main()
