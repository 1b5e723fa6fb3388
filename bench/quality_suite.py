"""The generalisation suite: train through the generic input format on every dataset at hand,
publish to a real Redis, and score the lists **as the storefront reads them** beside baselines
fitted in the same run on the same training part.

For each dataset and test protocol:

1. the test part is held out (``offline.training.test_split``);
2. the training part is written as a generic interactions CSV (plus an items CSV where the
   data has item text or categories), loaded back with the product's loader, trained and
   published with ``offline.release.train_and_publish`` on a private Tansu + Redis;
3. ``recs:{user}`` (ALL view) and ``discover:{user}`` (NEW view) are read back from Redis;
4. baselines are fitted on the same training part: popularity, repeat + popularity,
   SAR-style co-occurrence, EASE (under its item cap) and implicit's ALS, plus the product's
   own components as tuned by its validation, each list filled with popular items.

Prints one table (MAP@10 and NDCG@10, ALL and NEW) and the published lists' ratio to the best
other row, with its 95% interval from a paired bootstrap over the test customers (how far the
ratio could move on another draw of customers like them); writes bench/results/quality_suite.json
and docs/evaluation.md.

With ``--engines local spark`` (the default) the same training file is also trained and published
by the Spark engine (``recsys train --engine spark``, on ``local[2]``), and its lists, read from
Redis, form the row "published, Spark engine": each view's MAP@10 over the local engine's is
the parity the two engines must keep (0.97-1.03).

Run: .venv/bin/python bench/quality_suite.py [--datasets retail-global retail-basket ...] [--engines local]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from bench_results import save_results
from surprise_ml100k import ml100k_file
from models.base import DenseBlock
from models.cooccurrence import ItemCooccurrence
from models.ease import EASE
from models.factorization import ImplicitALS
from models.popularity import RecentPopularity
from models.repeat_purchase import RepeatPurchase
from offline.evaluation import HoldoutSplit, average_precisions, evaluate_lists, model_lists, view_relevance
from offline.history import load_history
from offline.interactions_loader import load_interactions, load_items, rating_weight
from offline.private_stack import private_stack
from offline.release import train_and_publish
from offline.simulator import planted_preferences, simulate_history
from offline.spark.reading import read_interactions
from offline.spark.session import start_spark
from offline.spark.trainer import train_and_publish_on_spark
from offline.training import interactions, test_split
from streams import redis_keys
from streams.connections import redis_client
from streams.recommendation_store import decode_list

K = 10
DOC = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
DOC_HEADER = """# Offline evaluation: the generalisation suite

Written by `bench/quality_suite.py` (do not edit by hand). Each dataset's training part goes
through the generic input format (`offline/interactions_loader.py`), is trained and published to a
real Redis exactly as `recsys train --publish --interactions` does, and the lists are read back
from Redis as the storefront reads them. Baselines and each of the hybrid's own components are
fitted on the same training part in the same run; their lists are filled with popular items,
as the published ones are. Datasets: UCI Online Retail under two protocols, the built-in
simulator, Ta-Feng (grocery baskets, by day) under two protocols and as a small grocer (a seeded
sample of 600 customers, each one's last basket held out), Book-Crossing (ratings, no
timestamps, 340k ISBNs) with a seeded random 20% per customer held out, and MovieLens-100K (film
ratings, one per customer and film, downloaded from PyPI in the recbole wheel) with each customer's
latest 20% held out. On the simulator, whose
truth is known, the ceiling row ranks items by each customer's planted chance of buying them: the
best lists possible in expectation, left out of the ratio's "best other".

"""
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
console = Console()


def retail() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    return load_history(str(DATA), "retail").orders, None


SIMULATOR = {"n_users": 2000, "n_items": 600, "orders_per_user": 6, "days": 180, "seed": 11}


def simulator() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    return simulate_history(**SIMULATOR), None


def ta_feng() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    raw = pd.read_csv(DATA / "ta-feng" / "ta_feng.csv.gz", dtype=str, encoding="utf-8-sig")
    amount = pd.to_numeric(raw["AMOUNT"], errors="coerce").fillna(1).clip(lower=1)
    history = pd.DataFrame({
        "user_id": raw["CUSTOMER_ID"], "item_id": raw["PRODUCT_ID"],
        "timestamp": pd.to_datetime(raw["TRANSACTION_DT"], format="%m/%d/%Y"),
        "quantity": amount.astype(int), "price": pd.to_numeric(raw["SALES_PRICE"], errors="coerce") / amount,
        "description": "", "country": "",
    })
    history["order_id"] = history["user_id"] + "@" + history["timestamp"].dt.strftime("%Y%m%d")
    items = raw.groupby("PRODUCT_ID")["PRODUCT_SUBCLASS"].first().rename("category").rename_axis("item_id")
    return history, items.reset_index()


def book_crossing() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    folder = DATA / "book-crossing"
    ratings = pd.read_csv(folder / "BX-Book-Ratings.csv.gz", sep=";", dtype=str, encoding="latin-1",
                          on_bad_lines="skip")
    history = pd.DataFrame({"user_id": ratings["User-ID"], "item_id": ratings["ISBN"].str.strip(),
                            "rating": pd.to_numeric(ratings["Book-Rating"], errors="coerce").fillna(0)})
    history = history.drop_duplicates(["user_id", "item_id"])
    books = pd.read_csv(folder / "BX-Books.csv.gz", sep=";", dtype=str, encoding="latin-1", on_bad_lines="skip",
                        usecols=["ISBN", "Book-Title", "Book-Author"])
    items = pd.DataFrame({"item_id": books["ISBN"].str.strip(),
                          "text": books["Book-Title"].fillna("") + " " + books["Book-Author"].fillna("")})
    return history, items


def movielens() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """MovieLens-100K: one rating per customer and film, with its time; titles and genres as text."""
    ratings, films = ml100k_file("inter"), ml100k_file("item")
    history = pd.DataFrame({"user_id": ratings["user_id"], "item_id": ratings["item_id"],
                            "timestamp": pd.to_datetime(pd.to_numeric(ratings["timestamp"]), unit="s"),
                            "rating": pd.to_numeric(ratings["rating"])})
    items = pd.DataFrame({"item_id": films["item_id"], "text": films["movie_title"] + " " + films["class"]})
    return history, items


SMALL_SHOP = 600  # customers: a small shop's history, with few customers to validate on


def ta_feng_small() -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A seeded sample of Ta-Feng's customers, all their lines: a small grocer's history."""
    history, items = ta_feng()
    customers = history["user_id"].drop_duplicates().sample(SMALL_SHOP, random_state=1)
    sample = history[history["user_id"].isin(customers)].reset_index(drop=True)
    return sample, items[items["item_id"].isin(sample["item_id"])]


# name -> (loader, test protocol)
DATASETS = {
    "retail-global": (retail, "global-time"),
    "retail-basket": (retail, "last-basket"),
    "simulator": (simulator, "global-time"),
    "ta-feng-global": (ta_feng, "global-time"),
    "ta-feng-basket": (ta_feng, "last-basket"),
    "ta-feng-small": (ta_feng_small, "last-basket"),
    "book-crossing": (book_crossing, "random-items"),
    "movielens-100k": (movielens, "last-items"),
}


# Where the truth is known (the simulator's planted preferences), the best lists possible: the
# ceiling any model's score is bounded by, in expectation, shown beside the rows but not one of them.
CEILINGS = {"simulator": lambda: planted_preferences(**SIMULATOR)}
CEILING_ROW = "ceiling: planted preferences"
PUBLISHED = "published (from Redis)"
ON_SPARK = "published, Spark engine (from Redis)"
NOT_RIVALS = (PUBLISHED, CEILING_ROW, ON_SPARK)  # rows the ratio's "best other" is not chosen from


def ceiling_lists(preferences: pd.DataFrame, split: HoldoutSplit) -> dict[str, np.ndarray]:
    """The test customers' top-k items by their true chance of being bought, in both views."""
    train = split.train
    scores = preferences.reindex(index=train.user_ids[split.user_rows], columns=train.item_ids).fillna(0.0)
    block = DenseBlock(scores.to_numpy(dtype=np.float32))
    bought = train.bought[split.user_rows]
    return {"ALL": block.top_n(K).items[:, :K], "NEW": block.top_n(K, bought).items[:, :K]}


def generic_history(history: pd.DataFrame) -> pd.DataFrame:
    """Order lines with the generic loader's defaults filled in, for building the split."""
    frame = history.copy()
    if "timestamp" not in frame:
        frame["timestamp"] = pd.Timestamp("1970-01-01")
    if "order_id" not in frame:
        frame["order_id"] = frame["user_id"] + "@" + frame["timestamp"].astype("int64").astype(str)
    for column, default in (("quantity", 1), ("price", 0.0), ("description", ""), ("country", "")):
        if column not in frame:
            frame[column] = default
    if "rating" in frame:
        frame["weight"] = rating_weight(frame["rating"])
    return frame


def write_training_files(history: pd.DataFrame, split: HoldoutSplit, items: pd.DataFrame | None,
                         folder: Path) -> tuple[Path, Path | None]:
    """The training part as a shop would export it: interactions CSV (and items CSV)."""
    keep = history.index.isin(split.train.events.index)
    train = history[keep]
    columns = [c for c in ("user_id", "item_id", "timestamp", "order_id", "quantity", "price", "rating",
                           "description") if c in train]
    if (train["timestamp"] == pd.Timestamp("1970-01-01")).all():
        columns.remove("timestamp")
    path = folder / "interactions.csv"
    train[columns].to_csv(path, index=False)
    items_path = None
    if items is not None:
        items_path = folder / "items.csv"
        items[items["item_id"].isin(train["item_id"])].to_csv(items_path, index=False)
    return path, items_path


def read_lists(client, key, users: np.ndarray, item_index: dict) -> np.ndarray:
    """Each user's list as Redis holds it, as train item columns (-1 for empty or unknown slots)."""
    out = np.full((len(users), K), -1, dtype=np.int64)
    for start in range(0, len(users), 1000):
        chunk = users[start:start + 1000]
        for n, raw in enumerate(client.mget([key(u) for u in chunk])):
            if raw is None:
                continue
            items = [item_index.get(i, -1) for i in decode_list(raw).items[:K]]
            out[start + n, :len(items)] = items
    return out


def baselines(split: HoldoutSplit) -> dict[str, dict[str, np.ndarray]]:
    """Each baseline's lists for the test customers, filled with popular items."""
    popularity = RecentPopularity(0.1).fit(split.train)
    models = {"popularity": popularity, "repeat + popularity": RepeatPurchase(90).fit(split.train),
              "SAR-style co-occurrence": ItemCooccurrence(30).fit(split.train),
              "EASE": EASE(200).fit(split.train), "ALS": ImplicitALS().fit(split.train)}
    return {name: model_lists(model, split, K, popularity) for name, model in models.items()}


BOOTSTRAP_DRAWS = 1000
DRAWS_AT_ONCE = 100  # each draw indexes every customer of every row: Book-Crossing has 40,000


def ratio_interval(published: np.ndarray, others: list[np.ndarray], seed: int = 0) -> tuple[float, float]:
    """The 95% interval of MAP(published) / the best MAP of ``others`` (each customer's AP, in the
    same customer order) over bootstrap draws of the customers. The best other row is chosen
    again in each draw: a ratio to the best of many rows is otherwise flattered by their luck."""
    rng = np.random.default_rng(seed)
    rows = np.vstack([published, *others])
    ratios = []
    for _ in range(BOOTSTRAP_DRAWS // DRAWS_AT_ONCE):
        drawn = rows[:, rng.integers(0, rows.shape[1], (DRAWS_AT_ONCE, rows.shape[1]))].mean(axis=2)
        ratios.append(drawn[0] / np.maximum(drawn[1:].max(axis=0), 1e-12))
    low, high = np.percentile(np.concatenate(ratios), [2.5, 97.5])
    return float(low), float(high)


def scored(split: HoldoutSplit, lists: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """``lists``' metrics per view, and each counted customer's AP@K per view."""
    return evaluate_lists(split, lists, K), {view: average_precisions(lists[view], view_relevance(split, view), K)
                                             for view in lists}


class DataUnavailable(RuntimeError):
    """A dataset's files are missing or cannot be fetched: the suite goes on without it."""


def run_dataset(name: str, stack, spark=None) -> dict:
    loader, protocol = DATASETS[name]
    started = time.monotonic()
    try:
        raw, items = loader()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DataUnavailable(f"{name} skipped: its data cannot be read here ({exc})") from exc
    history = generic_history(raw)
    data = interactions(history, items)
    split = test_split(data, protocol)
    console.print(f"[bold]{name}[/bold]: {protocol} test split, {split.train.n_users:,} train customers, "
                  f"{split.train.n_items:,} items, {len(split.test_users):,} test customers")
    with tempfile.TemporaryDirectory(prefix="recsys-quality-") as folder:
        interactions_path, items_path = write_training_files(history, split, items, Path(folder))
        loaded = load_interactions(interactions_path)
        item_table = load_items(items_path) if items_path else None

        def step(message: str) -> None:
            console.print(f"  [dim]{time.monotonic() - started:6.0f}s[/dim] {message}")

        release = train_and_publish(stack.settings, loaded, item_table, f"{name} (generic format)", True, step)
        client = redis_client(stack.settings)
        lists = {PUBLISHED: published_lists(client, split)}
        if spark is not None:
            spark_started = time.monotonic()
            train_and_publish_on_spark(stack.settings, spark, read_interactions(spark, interactions_path), item_table,
                                       f"{name} (generic format)", True, step)
            spark_seconds = round(time.monotonic() - spark_started, 1)
            lists[ON_SPARK] = published_lists(client, split)
    lists |= baselines(split)
    if name in CEILINGS:
        lists[CEILING_ROW] = ceiling_lists(CEILINGS[name](), split)
    trained = release.trained
    popularity = trained.components["popularity"]
    # The release indexes the same customers and items in its own order.
    as_released = HoldoutSplit(trained.data, split.test_users, split.relevant, split.protocol)
    for component, model in trained.components.items():
        lists[f"component: {component}"] = _columns_of(model_lists(model, as_released, K, popularity),
                                                       trained.data, split.train)
    rows, precisions = {}, {}
    for model, shown in lists.items():
        rows[model], precisions[model] = scored(split, shown)
    others = [model for model in rows if model not in NOT_RIVALS]
    return {"dataset": name, "protocol": protocol, "train_users": split.train.n_users,
            "items": split.train.n_items, "test_users": len(split.test_users),
            "validation": trained.selection.as_dict(), "seconds": round(time.monotonic() - started, 1),
            "spark_seconds": spark_seconds if spark is not None else None,
            "rows": {model: {view: {m: r[view][m] for m in ("map", "ndcg", "users")} for view in ("ALL", "NEW")}
                     for model, r in rows.items()},
            "ratio_interval": {view: ratio_interval(precisions[PUBLISHED][view],
                                                    [precisions[model][view] for model in others])
                               for view in ("ALL", "NEW")}}


def published_lists(client, split: HoldoutSplit) -> dict[str, np.ndarray]:
    """The test customers' published lists as Redis holds them: ALL from ``recs:``, NEW from ``discover:``."""
    index = split.train.item_index
    return {"ALL": read_lists(client, redis_keys.recs, split.test_users, index),
            "NEW": read_lists(client, redis_keys.discover, split.test_users, index)}


def _columns_of(lists: dict, source, target) -> dict:
    """Lists of ``source`` item columns as ``target`` item columns."""
    mapping = np.array([target.item_index.get(i, -1) for i in source.item_ids], dtype=np.int64)
    return {view: np.where(items >= 0, mapping[np.maximum(items, 0)], -1) for view, items in lists.items()}


def report(results: list[dict]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} with `bench/quality_suite.py`; k = 10. ALL scores the "
             "blended `recs:{user}` list, NEW the `discover:{user}` list, both read from Redis. Ratio: "
             "published / best other row of the same run, with its 95% interval over 1,000 bootstrap draws of the test "
             "customers (paired: every row scored on the same draw, the best other row chosen again in each).", ""]
    for result in results:
        rows = result["rows"]
        best = {view: max(r[view]["map"] for name, r in rows.items() if name not in NOT_RIVALS)
                for view in ("ALL", "NEW")}
        v = result["validation"]
        lines += [f"### {result['dataset']} ({result['protocol']} test; {result['train_users']:,} customers, "
                  f"{result['items']:,} items, {result['test_users']:,} test customers, {result['seconds']:.0f} s)",
                  "", f"Validation: {v['protocol']} ({v['protocol_reason']}). Published: recs = "
                      f"{v['published']['ALL']}{' (unbought items only)' if v.get('recs_unbought') else ''}, "
                      f"discover = {v['published']['NEW']}. "
                      + (f"Left out: {'; '.join(f'{k}: {r}' for k, r in v['dropped'].items())}." if v['dropped'] else ""),
                  "", "| model | ALL MAP@10 | ALL NDCG@10 | NEW MAP@10 | NEW NDCG@10 |", "|---|---|---|---|---|"]
        for name, r in rows.items():
            lines.append(f"| {name} | {r['ALL']['map']:.4f} | {r['ALL']['ndcg']:.4f} | {r['NEW']['map']:.4f} | "
                         f"{r['NEW']['ndcg']:.4f} |")
        published, interval = rows[PUBLISHED], result["ratio_interval"]
        lines += ["", "Published / best other: " + ", ".join(
            f"{view} {published[view]['map'] / max(best[view], 1e-9):.3f} (95% interval {interval[view][0]:.3f}-"
            f"{interval[view][1]:.3f})" for view in ("ALL", "NEW")), ""]
        if ON_SPARK in rows:
            spark = rows[ON_SPARK]
            lines += ["Spark engine / local engine: " + ", ".join(
                f"{view} {spark[view]['map'] / max(published[view]['map'], 1e-9):.3f}" for view in ("ALL", "NEW"))
                + "; Spark / best other: " + ", ".join(
                f"{view} {spark[view]['map'] / max(best[view], 1e-9):.3f}" for view in ("ALL", "NEW"))
                + f" (Spark engine: {result['spark_seconds']:.0f} s on local[2])", ""]
        if CEILING_ROW in rows:
            ceiling = rows[CEILING_ROW]
            lines += [f"Ceiling / best other: ALL {ceiling['ALL']['map'] / max(best['ALL'], 1e-9):.3f}, "
                      f"NEW {ceiling['NEW']['map'] / max(best['NEW'], 1e-9):.3f} (no model can beat the best other "
                      "row by more than this, in expectation)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--engines", nargs="+", default=["local", "spark"], choices=["local", "spark"])
    args = parser.parse_args()
    results = []
    spark = start_spark("local[2]", {}) if "spark" in args.engines else None
    with private_stack("quality", archive_dir="") as stack:
        for name in args.datasets:
            try:
                results.append(run_dataset(name, stack, spark))
            except DataUnavailable as exc:
                console.print(f"[yellow]{exc}[/yellow]")
                continue
            DOC.write_text(DOC_HEADER + report(results) + "\n")
            save_results("quality_suite", {"results": results})
    table = Table("dataset", "model", "ALL MAP", "ALL NDCG", "NEW MAP", "NEW NDCG", title="quality suite (k=10)")
    for result in results:
        for name, r in result["rows"].items():
            table.add_row(result["dataset"], name, *(f"{r[v][m]:.4f}" for v in ("ALL", "NEW") for m in ("map", "ndcg")))
    console.print(table)
    console.print(report(results))


if __name__ == "__main__":
    main()
