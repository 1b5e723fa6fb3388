"""The ``recsys`` command: one entry point for every role (stack, worker, replay, storefront read, demo).

It lives in ``offline/`` because only this package may depend on both the
worker (``streams``) and the history tools.
"""

from __future__ import annotations

import sys
from typing import Optional

import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from offline.history import load_history
from offline.retail_history import HistoryError
from streams.local_stack import LocalStack, StackError
from streams.settings import Settings, SettingsError

app = typer.Typer(help="Event-driven streaming recommender for e-commerce.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The local stack: Tansu (Kafka API) and Redis on loopback.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()


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
        console.print(f"{service.name:<6} {service.url}  ({origin})")
    print(f"export KAFKA_BOOTSTRAP_SERVERS={services['kafka'].url} REDIS_URL={services['redis'].url}")


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
        table.add_row(service.name, service.url, str(service.pid or "external"), "up" if healthy else "DOWN")
    console.print(table)


@app.command()
def worker() -> None:
    """Run a Faust worker: consume events, keep session features, write recommendations to Redis."""
    from streams.worker import run_worker

    run_worker(settings())


@app.command()
def replay(
    source: str = typer.Option("auto", help="auto (real data if present, else simulator), retail or simulator."),
    limit: Optional[int] = typer.Option(None, min=1, help="Replay at most this many orders."),
    start: Optional[str] = typer.Option(None, help="Skip orders before this date (YYYY-MM-DD)."),
    speed: float = typer.Option(0.0, min=0.0, help="Times real time; 0 publishes as fast as possible."),
    download: Optional[bool] = typer.Option(None, "--download/--no-download", help="Fetch Online Retail from UCI if missing."),
) -> None:
    """Publish purchase history to Kafka as the platform would: catalog, derived clicks, purchases."""
    if source not in ("auto", "retail", "simulator"):
        raise typer.BadParameter("must be auto, retail or simulator", param_hint="--source")
    conf = settings()
    stats, _ = publish_history(conf, source, limit, start, speed, download)
    console.print(f"published {sum(stats.sent.values()):,} events for {len(stats.users):,} users "
                  f"in {stats.seconds:.1f} s: " + ", ".join(f"{t}={n:,}" for t, n in stats.sent.items()))


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
def recs(user_id: str, as_json: bool = typer.Option(False, "--json", help="Print the raw JSON stored in Redis.")) -> None:
    """Print a user's recommendations as the storefront reads them (one Redis GET)."""
    from streams.recommendation_store import read_recommendations
    from streams import redis_keys
    import msgspec

    client = redis.Redis.from_url(settings().redis_url, socket_connect_timeout=3)
    listing = read_recommendations(client, user_id)
    if listing is None:
        console.print(f"no recommendations for {user_id} and no popular fallback yet")
        raise typer.Exit(1)
    if as_json:
        console.print_json(msgspec.json.encode(listing).decode())
        return
    titles = client.mget([redis_keys.product(item) for item in listing.items]) if listing.items else []
    kind = "popular fallback" if listing.fallback else "personal"
    table = Table("rank", "item", "score", "title",
                  title=f"{user_id}: {kind}, model {listing.model_version}, rec_id {listing.rec_id}")
    for rank, (item, score, title) in enumerate(zip(listing.items, listing.scores, titles), start=1):
        name = msgspec.json.decode(title).get("title", "") if title else ""
        table.add_row(str(rank), item, f"{score:.3f}", name)
    console.print(table)


@app.command()
def demo(
    orders: int = typer.Option(2000, min=1, help="How many orders of history to replay."),
    customers: int = typer.Option(4, min=1, max=20, help="How many customers to show."),
) -> None:
    """Bring up a private local stack and a worker, replay real history, show recommendations, clean up."""
    from offline.demo import run_demo

    run_demo(orders, customers, console)


def main() -> None:
    try:
        app()
    except (SettingsError, StackError, HistoryError, ConnectionError, redis.ConnectionError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
