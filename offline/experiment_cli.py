"""``recsys experiment``: start, stop and report experiments between model versions or settings."""

from __future__ import annotations

import json
import math
from typing import List

import typer
from rich.console import Console
from rich.table import Table

from streams.experiment_report import METRICS, report
from streams.connections import redis_client
from streams.experiments import (ExperimentError, new_experiment, parse_arm, read_experiment, read_outcomes,
                                 start_experiment, stop_experiment)
from streams.model_artifacts import ArtifactStore
from streams.settings import Settings

experiment_app = typer.Typer(help="Experiments: customers split between model versions or settings.",
                             no_args_is_help=True)
console = Console(markup=False)
LABELS = {"click_through": "click-through", "hit_rate": "purchase hit-rate",
          "revenue_per_customer": "revenue / customer"}


def _experiment_error(exc: ExperimentError) -> typer.BadParameter:
    return typer.BadParameter(str(exc))


@experiment_app.command("start")
def start(
    name: str = typer.Argument(..., help="The experiment's name (letters, digits, . _ -)."),
    arms: List[str] = typer.Option(..., "--arm", help="NAME=VERSION_OR_SETTINGS:WEIGHT, e.g. A=latest:50 or "
                                                      "B=latest,RERANK_SESSION_WEIGHT=0.6:50; two or more."),
) -> None:
    """Split customers between arms, sticky by a hash of (experiment, customer); workers follow within seconds."""
    conf = Settings.from_env()
    try:
        experiment = new_experiment(name, [parse_arm(arm) for arm in arms], conf)
        store = ArtifactStore(conf.artifact_dir)
        for arm in experiment.arms:  # a version workers could not load would leave its customers unserved
            store.load(arm.version)
        start_experiment(redis_client(conf), experiment)
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    for arm in experiment.arms:
        settings = ", ".join(f"{k.upper()}={v:g}" for k, v in arm.settings.items())
        console.print(f"arm {arm.name}: {arm.version}{', ' + settings if settings else ''}, weight {arm.weight:g}")
    console.print(f"experiment {name} started; `recsys experiment report` shows how the arms do")


@experiment_app.command("stop")
def stop() -> None:
    """End the running experiment: every customer gets the deployed model again; outcomes stay for the report."""
    try:
        stopped = stop_experiment(redis_client(Settings.from_env()))
    except ExperimentError as exc:
        raise _experiment_error(exc) from None
    console.print(f"experiment {stopped.name} stopped")


@experiment_app.command("report")
def show_report(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Per arm: exposures, click-through, purchase hit-rate and revenue per customer, with 95% intervals and
    tests against the first arm."""
    client = redis_client(Settings.from_env())
    experiment = read_experiment(client)
    if experiment is None:
        raise typer.BadParameter("no experiment yet; `recsys experiment start` begins one")
    summary = report(experiment, read_outcomes(client, experiment))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(render(summary))


def _number(value: float, metric: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.2f}" if metric == "revenue_per_customer" else f"{value:.1%}"


def render(summary: dict) -> Table:
    state = "running" if summary["running"] else "stopped"
    arms = summary["arms"]
    table = Table("metric", "arm", "value", "95% interval", f"p vs {arms[0]['arm']}",
                  title=f"experiment {summary['experiment']} ({state}): " +
                        ", ".join(f"{a['arm']} {a['customers']:,} customers / {a['lists']:,} lists" for a in arms))
    for metric in METRICS:
        for arm in arms:
            estimate = arm[metric]
            p_value = estimate["p_value"]
            table.add_row(LABELS[metric], arm["arm"], _number(estimate["value"], metric),
                          f"{_number(estimate['low'], metric)} - {_number(estimate['high'], metric)}",
                          "" if p_value is None else f"{p_value:.3g}")
        winner = summary["winners"][metric]
        table.add_row("", "", "", f"winner: {winner}" if winner else "no significant difference", "",
                      end_section=True)
    return table
