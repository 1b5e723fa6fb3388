"""What operators read is valid and refers to real metrics: promtool on the /metrics pages and the
alert rules, and every metric named by an alert or a Grafana panel is one the code exports."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from faust.types import TP
from fastapi.testclient import TestClient

from streams.api.app import create_api
from streams.online_metrics import OnlineMetrics

MONITORING = Path(__file__).resolve().parent.parent / "streams" / "monitoring"
METRIC = re.compile(r"\b(recsys_[a-z0-9_]+|up)\b")
WINDOW = {"seconds": 60.0, "events_per_second": 12.0, "dead_letters_per_second": 0.1, "freshness_p50_seconds": 0.08,
          "freshness_p99_seconds": 0.2, "duplicates": 0, "scopes": [
              {"model_version": "v1", "segment": "lapsing", "lists": 5, "views": 1, "carts": 0, "purchases": 2,
               "purchase_hits": 1, "click_through": 0.2, "purchase_hit_rate": 0.5}]}


class Monitor:  # what the lag collector reads from Faust's monitor
    tp_end_offsets = {TP("clicks", 0): 120, TP("clicks", 1): 40}
    tp_committed_offsets = {TP("clicks", 0): 100}
    tp_read_offsets = {TP("clicks", 1): 39}


def worker_page() -> str:
    metrics = OnlineMetrics()
    metrics.export_window(lambda: WINDOW)
    metrics.export_consumer_lag(Monitor())
    metrics.events({"valid:clicks": 3, "dead_letter:clicks": 1})
    metrics.list_written("v1", "lapsing", 0.05)
    metrics.feedback("view", "v1", "lapsing", "implicit")
    metrics.hit_rate.labels(model_version="v1").set(0.5)
    return metrics.render().decode()


def exported(page: str) -> set[str]:
    names = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else set()
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line)[0])
    return names | {"up"}  # Prometheus' own, per scrape target


@pytest.fixture
def api_page(stack_settings, tmp_path) -> str:
    with TestClient(create_api(stack_settings.replace(report_dir=str(tmp_path)))) as client:
        client.get("/recs/u1")
        return client.get("/metrics").text


def promtool_check_metrics(promtool, page: str) -> None:
    result = subprocess.run([str(promtool), "check", "metrics"], input=page, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_worker_page_passes_promtool_and_reports_lag_per_partition(promtool):
    page = worker_page()
    promtool_check_metrics(promtool, page)
    assert 'recsys_consumer_lag_messages{partition="0",topic="clicks"} 20.0' in page
    assert 'recsys_consumer_lag_messages{partition="1",topic="clicks"} 0.0' in page


@pytest.mark.integration
def test_the_api_page_passes_promtool(promtool, api_page):
    assert "recsys_api_requests_total" in api_page
    promtool_check_metrics(promtool, api_page)


def test_the_alert_rules_pass_promtool(promtool):
    result = subprocess.run([str(promtool), "check", "rules", str(MONITORING / "alerts.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def expressions() -> dict[str, str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    found = {f"alert {rule['alert']}": rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    dashboard = json.loads((MONITORING / "grafana" / "recsys.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    return found


@pytest.mark.integration
def test_every_alert_and_panel_names_metrics_the_code_exports(api_page):
    names = exported(worker_page()) | exported(api_page)
    found = expressions()
    assert len(found) >= 15
    for where, expr in found.items():
        used = set(METRIC.findall(expr))
        assert used, (where, expr)
        assert used <= names, (where, used - names)


def test_the_dashboard_covers_what_operators_watch():
    titles = " ".join(where for where in expressions()).lower()
    for topic in ("events", "lag", "freshness", "dead letters", "click-through", "hit-rate"):
        assert topic in titles, topic
