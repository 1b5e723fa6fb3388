"""The ``recsys`` command: one entry point for every role (stack, worker, replay, storefront read, demo).

It lives in ``offline/`` because only this package may depend on both the
worker (``streams``) and the history tools.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import redis
import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from offline.experiment_cli import experiment_app
from offline.history import load_history
from offline.retail_history import HistoryError
from streams.connections import redis_client
from streams.local_stack import LocalStack, StackError
from streams.model_artifacts import ArtifactError
from streams.settings import TRAIN_ENGINES, Settings, SettingsError, redact_url

app = typer.Typer(help="Event-driven streaming recommender for e-commerce.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The local stack: Tansu (Kafka API) and Redis on loopback.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(experiment_app, name="experiment")
# Product titles, ids and paths are printed as they are: no markup, so "[/x]" in data cannot break output.
console = Console(markup=False)

SOURCE_HELP = ("auto (real data if present, else simulator), retail, simulator, or archive (the worker's "
               "ARCHIVE_DIR); ignored with --interactions.")
SOURCE_OPTION = typer.Option("auto", help=SOURCE_HELP)
INTERACTIONS_OPTION = typer.Option(None, exists=True, help="Generic interactions: a CSV or Parquet file, or a folder "
                                                            "of them.")
ITEMS_OPTION = typer.Option(None, exists=True, dir_okay=False, help="Items file: item_id, text, category, price.")
VALIDATION_OPTION = typer.Option("auto", help="Validation split: auto (chosen from the data), global-time, "
                                                "last-basket, last-items or random-items.")
DOWNLOAD_OPTION = typer.Option(None, "--download/--no-download", help="Fetch Online Retail from UCI if missing.")


def settings() -> Settings:
    return Settings.from_env()


@stack_app.command("up")
def stack_up() -> None:
    """Start the broker and Redis (or adopt reachable ones named by KAFKA_BOOTSTRAP_SERVERS / REDIS_URL)."""
    from streams.topic_admin import ensure_topics

    conf = settings()
    services = LocalStack(conf.stack_state_dir).up()
    conf = Settings.from_env()
    ensure_topics(conf)
    for service in services.values():
        origin = f"pid {service.pid}" if service.started_here else "external"
        console.print(f"{service.name:<6} {redact_url(service.url)}  ({origin})")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={services['kafka'].url} REDIS_URL={redact_url(services['redis'].url)}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started; external servers are left alone."""
    stopped = LocalStack(settings().stack_state_dir).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")


@stack_app.command("status")
def stack_status() -> None:
    """Show the recorded services and whether they answer."""
    rows = LocalStack(settings().stack_state_dir).status()
    if not rows:
        console.print("no local stack recorded; run `recsys stack up`")
        return
    table = Table("service", "url", "pid", "state")
    for service, healthy in rows:
        table.add_row(service.name, redact_url(service.url), str(service.pid or "external"), "up" if healthy else "DOWN")
    console.print(table)


@app.command()
def worker() -> None:
    """Run a Faust worker: consume events, keep session features, write recommendations to Redis."""
    from streams.worker import run_worker

    run_worker(settings())


@app.command()
def api() -> None:
    """Serve the storefront API and the monitoring dashboard on API_HOST:API_PORT (loopback by default)."""
    import uvicorn

    from streams.api.app import create_api

    conf = settings()
    console.print(f"storefront API and dashboard on http://{conf.api_host}:{conf.api_port}/")
    uvicorn.run(create_api(conf), host=conf.api_host, port=conf.api_port, log_level=conf.log_level.lower(),
                access_log=False, server_header=False, loop="uvloop", http="httptools")


@app.command()
def replay(
    source: str = typer.Option("auto", help="auto (real data if present, else simulator), retail or simulator."),
    limit: Optional[int] = typer.Option(None, min=1, help="Replay at most this many orders."),
    start: Optional[str] = typer.Option(None, help="Skip orders before this date (YYYY-MM-DD)."),
    speed: float = typer.Option(0.0, min=0.0, help="Times real time; 0 publishes as fast as possible."),
    download: Optional[bool] = DOWNLOAD_OPTION,
) -> None:
    """Publish purchase history to Kafka as the platform would: catalog, derived clicks, purchases."""
    if source not in ("auto", "retail", "simulator"):
        raise typer.BadParameter("must be auto, retail or simulator", param_hint="--source")
    if start is not None:
        _check_date(start, "--start")
    conf = settings()
    stats, _ = publish_history(conf, source, limit, start, speed, download)
    console.print(f"published {sum(stats.sent.values()):,} events for {len(stats.users):,} users "
                  f"in {stats.seconds:.1f} s: " + ", ".join(f"{t}={n:,}" for t, n in stats.sent.items()))


def _check_date(value: str, option: str):
    import pandas as pd

    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


def publish_history(conf: Settings, source: str, limit=None, start=None, speed=0.0, download=None):
    """Load, clean, slice and replay history; return the replay's stats and the orders sent."""
    from offline.replay import replay as run_replay, select_orders
    from streams.topic_admin import ensure_topics

    history = load_history(conf.data_dir, source, download, ask=lambda q: typer.confirm(q, default=False))
    console.print(f"history: {history.source}")
    if history.report:
        for line in history.report.lines():
            console.print(f"  {line}")
    orders = select_orders(history.orders, limit, start)
    if orders.empty:
        raise HistoryError("no orders left to replay after --start/--limit")
    ensure_topics(conf)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("replay", total=None)
        stats = run_replay(conf, orders, speed, on_progress=lambda n, total: progress.update(task, completed=n, total=total))
    return stats, orders


@app.command()
def recs(user_id: str, as_json: bool = typer.Option(False, "--json", help="Print the list as JSON, as the API answers it.")) -> None:
    """Print a user's recommendations as the storefront reads them (one Redis GET)."""
    import msgspec

    from models.explanations import UNKNOWN, describe, products_to_name
    from streams import redis_keys
    from streams.recommendation_store import product_title, read_recommendations

    client = redis_client(settings())
    listing = read_recommendations(client, user_id)
    if listing is None:
        console.print(f"no recommendations for {user_id} and no popular fallback yet")
        raise typer.Exit(1)
    if as_json:
        console.print_json(msgspec.json.encode(listing).decode())
        return
    reasons = listing.reasons or [UNKNOWN] * len(listing.items)
    named = products_to_name(listing.items, reasons)
    records = client.mget([redis_keys.product(item) for item in named]) if named else []
    names = {item: product_title(record) for item, record in zip(named, records)}
    kind = "popular fallback" if listing.fallback else "personal"
    arm = f", arm {listing.arm}" if listing.arm else ""
    table = Table("rank", "item", "score", "title", "why",
                  title=f"{user_id}: {kind}, model {listing.model_version}{arm}, rec_id {listing.rec_id}")
    untitled = 0
    for rank, (item, score, reason) in enumerate(zip(listing.items, listing.scores, reasons), start=1):
        untitled += not names[item]
        # An untitled item shows its id.
        table.add_row(str(rank), item, f"{score:.2f}", names[item] or item,
                      describe(reason, lambda other: names.get(other) or other))
    console.print(table)
    if untitled:
        console.print(f"{untitled} of {len(listing.items)} items have no title in the catalog (product:{{item_id}})")


@app.command()
def demo(
    orders: int = typer.Option(2000, min=1, help="How many orders of history to replay."),
    customers: int = typer.Option(4, min=1, max=20, help="How many customers to show."),
) -> None:
    """Bring up a private local stack and a worker, replay real history, show recommendations, clean up."""
    from offline.demo import run_demo

    run_demo(orders, customers, console)




def training_history(source: str, interactions: Optional[Path], items: Optional[Path], download: Optional[bool]):
    """(order lines, items or None, where they came from) for the offline commands."""
    from offline.interactions_loader import load_interactions_from, load_items

    if interactions is not None:
        return load_interactions_from(interactions), load_items(items) if items else None, str(interactions)
    if source == "archive":
        from offline.archive_loader import load_archive

        history, archived_items = load_archive(settings().archive_dir)
        return history, load_items(items) if items else archived_items, f"event archive ({settings().archive_dir})"
    if source not in ("auto", "retail", "simulator"):
        raise typer.BadParameter("must be auto, retail, simulator or archive", param_hint="--source")
    history = load_history(settings().data_dir, source, download, ask=lambda q: typer.confirm(q, default=False))
    if history.report:
        for line in history.report.lines():
            console.print(f"  {line}")
    return history.orders, load_items(items) if items else None, history.source


def step_printer():
    started = time.monotonic()
    return lambda message: console.print(Text.assemble((f"{time.monotonic() - started:6.1f}s", "dim"), f" {message}"))


@contextmanager
def working(what: str):
    """Timed step lines, as ``step_printer``; on a terminal, a spinner under them with the time since
    the last step shows the work goes on between steps (plain lines otherwise)."""
    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(what, total=None)

        def step(message: str) -> None:
            progress.console.print(Text.assemble((f"{time.monotonic() - started:6.1f}s", "dim"), f" {message}"))
            progress.reset(task, description=f"{what}: after {message[:50]}")

        yield step


@app.command()
def train(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    items: Optional[Path] = ITEMS_OPTION,
    publish: bool = typer.Option(False, "--publish", help="Bulk-write Redis and announce the version to workers."),
    every: Optional[str] = typer.Option(None, help="Retrain periodically, e.g. 6h or 30m (implies --publish)."),
    evaluate: bool = typer.Option(False, "--evaluate", help="Also rerun the holdout evaluation (REPORT_DIR) each "
                                                            "round, for the dashboard (on the local engine)."),
    download: Optional[bool] = DOWNLOAD_OPTION,
    validation: str = VALIDATION_OPTION,
    engine: Optional[str] = typer.Option(None, help="local (one process) or spark; default TRAIN_ENGINE."),
    spark_conf: list[str] = typer.Option([], "--conf", help="Spark configuration key=value (repeatable), over "
                                                            "SPARK_CONF; with --engine spark."),
) -> None:
    """Train every model on the history, write a versioned artifact, optionally publish it."""
    from offline.release import train_and_publish
    from offline.schedule import parse_interval, run_periodically

    interval = parse_interval(every) if every else None
    conf = settings()
    engine = engine or conf.train_engine
    if engine not in TRAIN_ENGINES:
        raise typer.BadParameter(f"must be {' or '.join(TRAIN_ENGINES)}", param_hint="--engine")
    publishing = publish or interval is not None
    if engine == "spark":
        spark_round = _spark_run(conf, source, interactions, items, download, publishing, validation, spark_conf)

        def run() -> str:
            version = spark_round()
            if evaluate:  # the holdout evaluation is the local engine's, on the history loaded here
                history, item_table, origin = training_history(source, interactions, items, download)
                with working("evaluating") as step:
                    _evaluate(conf, history, item_table, origin, step)
            return version
    else:
        def run() -> str:
            history, item_table, origin = training_history(source, interactions, items, download)
            with working("training") as step:
                step(f"history from {origin}")
                # The spinner stands for the publishing bar too: a terminal shows one live display at a time.
                version = train_and_publish(conf, history, item_table, origin, publishing, step, validation,
                                            None if console.is_terminal else console).version
                if evaluate:
                    _evaluate(conf, history, item_table, origin, step)
            return version

    if interval is None:
        run()
    else:
        run_periodically(run, interval, conf, console)


def _evaluate(conf: Settings, history, item_table, origin: str, step) -> None:
    """The holdout evaluation, written to REPORT_DIR for the dashboard."""
    from offline.evaluation_report import write_evaluation
    from offline.training import evaluate_all

    report = evaluate_all(history, item_table, progress=step)
    step(f"evaluation written to {write_evaluation(report, origin, conf.report_dir)['json']}")


def _spark_run(conf: Settings, source: str, interactions: Optional[Path], items: Optional[Path],
               download: Optional[bool], publish: bool, validation: str, extra_conf: list[str]):
    """A training round on the Spark engine: the session starts once and serves every round."""
    from offline.spark.session import executor_errors, parse_conf, start_spark
    from offline.spark.trainer import train_and_publish_on_spark

    spark_conf = {**parse_conf(conf.spark_conf.split(",")), **parse_conf(extra_conf)}
    session = []

    def run() -> str:
        with working("training on Spark") as step:
            if not session:
                session.append(start_spark(conf.spark_master, spark_conf))
                step(f"Spark {session[0].version} on {conf.spark_master}")
            with executor_errors():
                lines, item_table, origin = _spark_history(session[0], source, interactions, items, download)
                step(f"history from {origin}")
                return train_and_publish_on_spark(conf, session[0], lines, item_table, origin, publish, step,
                                                  validation).version

    return run


def _spark_history(spark, source: str, interactions: Optional[Path], items: Optional[Path], download: Optional[bool]):
    """(order lines as a Spark DataFrame, items or None, where they came from): interactions and the
    event archive read by Spark; the built-in data sets loaded on the driver and handed over."""
    from offline.interactions_loader import load_items
    from offline.spark.reading import from_frame, read_archive, read_interactions

    if interactions is not None:
        return read_interactions(spark, interactions), load_items(items) if items else None, str(interactions)
    if source == "archive":
        lines, archived_items = read_archive(spark, settings().archive_dir)
        return lines, load_items(items) if items else archived_items, f"event archive ({settings().archive_dir})"
    history, item_table, origin = training_history(source, None, items, download)
    return from_frame(spark, history), item_table, origin


@app.command()
def evaluate(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    items: Optional[Path] = ITEMS_OPTION,
    cut: Optional[str] = typer.Option(None, help="First day of the test window (default: the last 30 days)."),
    protocol: str = typer.Option("global-time", help="Test split: global-time (from --cut), last-basket, "
                                                     "last-items or random-items."),
    download: Optional[bool] = DOWNLOAD_OPTION,
    wide: bool = typer.Option(False, "--wide", help="Show precision, recall and coverage too (wider than 80 columns)."),
) -> None:
    """Held-out evaluation of every model, the hybrid and the published lists (ALL and NEW views, k=10)."""

    from offline.evaluation_report import evaluation_table, write_evaluation
    from offline.evaluation import PROTOCOLS
    from offline.training import evaluate_all

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"must be one of {', '.join(PROTOCOLS)}", param_hint="--protocol")
    cut_ts = _check_date(cut, "--cut") if cut else None
    history, item_table, origin = training_history(source, interactions, items, None if download is None else download)
    with working("evaluating") as step:
        report = evaluate_all(history, item_table, cut_ts, progress=step, protocol=protocol)
    paths = write_evaluation(report, origin, settings().report_dir)
    console.print(evaluation_table(report, wide))
    console.print(f"written: {paths['json']}, {paths['markdown']}")


@app.command()
def eda(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    download: Optional[bool] = DOWNLOAD_OPTION,
) -> None:
    """Exploratory report: one HTML file with a PNG and a computed finding per chart."""
    from offline.eda_report import EdaReport

    cancellations, currency = None, ""
    if interactions is None and source in ("auto", "retail"):
        loaded = load_history(settings().data_dir, source, download, ask=lambda q: typer.confirm(q, default=False))
        history, origin, currency = loaded.orders, loaded.source, loaded.currency
        cancellations = loaded.report.cancellations if loaded.report else None
    else:
        history, _, origin = training_history(source, interactions, None, download)
    report = EdaReport(history, Path(settings().report_dir) / "eda", origin, cancellations, currency)
    path = report.build()
    for chart in report.charts:
        console.print(Text.assemble((chart.title, "bold"), f": {chart.finding}"))
    console.print(f"written: {path}")


@app.command()
def segment(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    publish: bool = typer.Option(False, "--publish", help="Write every customer's segment to Redis."),
    download: Optional[bool] = DOWNLOAD_OPTION,
) -> None:
    """Customer segmentation: scaled RFM and behaviour, K-Means with k by silhouette, named profiles."""
    from models.segments import CustomerSegmentation
    from offline.segment_report import write_segment_report
    from offline.training import interactions as build_interactions
    from streams import redis_keys

    history, _, _ = training_history(source, interactions, None, download)
    seg = CustomerSegmentation().fit(build_interactions(history))
    paths = write_segment_report(seg, Path(settings().report_dir) / "segments")
    curve = ", ".join(f"k={k}: {s:.3f}" for k, s in seg.silhouette.items())
    console.print(f"silhouette {curve}; chose k={seg.k}")
    # The segment's name and rule take the width; the medians are short numbers.
    table = Table("segment", "customers", "rule", "spend", "orders", "days idle",
                  caption="spend, orders, days idle: the segment's median customer")
    for p in seg.profiles.values():
        table.add_row(p.name, f"{p.customers:,}", p.rule, f"{p.centroid['monetary']:,.0f}",
                      f"{p.centroid['frequency']:.0f}", f"{p.centroid['recency_days']:.0f}")
    console.print(table)
    if publish:
        client = redis_client(settings())
        pipe = client.pipeline(transaction=False)
        for user_id, name in seg.labels.items():
            pipe.hset(redis_keys.segment_bucket(user_id), user_id, name)
        pipe.execute()
        console.print(f"wrote the segments of {len(seg.labels):,} customers")
    console.print("written: " + ", ".join(str(p) for p in paths.values()))


@app.command()
def prequential(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    download: Optional[bool] = DOWNLOAD_OPTION,
) -> None:
    """Replay the last 30 days through a worker on a private stack; score static vs session-aware lists."""
    from offline.prequential_run import run_prequential

    history, _, origin = training_history(source, interactions, None, download)
    rows = run_prequential(history, origin, settings().report_dir, step_printer())
    table = Table("list served before each purchase", "customers", "purchases", "hit-rate@10", "MAP@10",
                  title="prequential")
    for row in rows:
        table.add_row(row["list"], row["customers"], f"{row['purchases']:,}", f"{row['hit_rate@10']:.4f}",
                      f"{row['map@10']:.4f}")
    console.print(table)
    console.print(f"written: {Path(settings().report_dir) / 'prequential.json'}")


@app.command("online-segments")
def online_segments(
    source: str = SOURCE_OPTION,
    interactions: Optional[Path] = INTERACTIONS_OPTION,
    download: Optional[bool] = DOWNLOAD_OPTION,
) -> None:
    """Replay orders through River's online clusterers and report their agreement (ARI) with offline segments."""
    from models.segments import CustomerSegmentation
    from offline.online_segments_report import write_online_segments_report
    from offline.training import interactions as build_interactions

    history, _, origin = training_history(source, interactions, None, download)
    step = step_printer()
    offline = CustomerSegmentation().fit(build_interactions(history)).labels
    step(f"offline segments of {len(offline):,} customers from {origin}")
    report = write_online_segments_report(history, offline, Path(settings().report_dir) / "segments")
    table = Table("online clusterer", *(f"ARI @{p['orders']:,}" for p in report["results"][0]["curve"][::3]),
                  "final ARI", "clusters", "seconds", title=f"{report['orders']:,} orders replayed")
    for result in report["results"]:
        table.add_row(result["algorithm"], *(f"{p['ari']:.3f}" for p in result["curve"][::3]),
                      f"{result['final_ari']:.3f}", str(result["clusters"]), f"{result['seconds']:.1f}")
    console.print(table)
    console.print(f"chosen for the worker: {report['chosen']}; written: {Path(settings().report_dir) / 'segments'}")


def _error(message: str) -> None:
    Console(stderr=True, markup=False, soft_wrap=True).print(Text.assemble(("error:", "red"), f" {message}"), highlight=False)


def main() -> None:
    """Every bad input or unreachable server is one ``error:`` line and exit status 2."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except TyperException as exc:  # bad arguments or options
        _error(str(getattr(exc, "format_message", exc.__str__)()).replace("\n", " "))
        sys.exit(2)
    except (SettingsError, StackError, HistoryError, ArtifactError, ConnectionError, redis.ConnectionError) as exc:
        _error(str(exc))
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
