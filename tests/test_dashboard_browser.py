"""The monitoring dashboard in headless Chromium against a running stack: charts drawn from real numbers.

The page is loaded from the API while a worker processes replayed events; the
test waits for data, reads back what each Plotly chart holds, and saves a
screenshot to tests/artifacts/dashboard.png.
"""

import asyncio
import json
from contextlib import asynccontextmanager
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from offline.release import train_and_publish
from offline.evaluation_report import write_evaluation
from offline.private_stack import private_stack, wait_until_processed
from offline.replay import replay
from offline.simulator import simulate_history
from streams.events import ClickEvent, OrderLine, PurchaseEvent, encode_event
from streams.experiments import new_experiment, parse_arm, start_experiment
from streams.recommendation_store import read_recommendations
from offline.training import evaluate_all
from tests.conftest import wait_for_arm_lists

pytestmark = pytest.mark.integration

SCREENSHOT = Path(__file__).parent / "artifacts" / "dashboard.png"
# As the workplace runs Chromium headless: no sandbox (root), and no calls to Google's services.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def dashboard_data(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/dashboard/data", timeout=10) as response:
        return json.loads(response.read())


def wait_for_timeline(url: str, points: int, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    data = {}
    while time.monotonic() < deadline:
        data = dashboard_data(url)
        if len(data["timeline"]) >= points and data["window"]["events_per_second"] > 0:
            return data
        time.sleep(1.0)
    raise AssertionError(f"the dashboard feed did not fill: {data}")


async def read_charts(page) -> dict:
    """Each chart's traces, whether it is drawn, its empty-state message and its y axis' range and ticks."""
    return await page.evaluate("""() => Object.fromEntries(
        ["chart-events", "chart-freshness", "chart-quality", "chart-segments"].map((id) => {
            const div = document.getElementById(id);
            const axis = div._fullLayout.yaxis;
            return [id, {traces: (div.data || []).map((t) => ({name: t.name, y: t.y})),
                         drawn: div.querySelectorAll("svg.main-svg").length,
                         message: (div.layout.annotations || []).map((a) => a.text).join(" "),
                         range: axis.range, ticks: (axis._vals || []).map((tick) => tick.x)}];
        }))""")


async def read_customer(page, url: str, user_id: str) -> dict:
    """The customer panel, opened from a link as a support agent would follow one."""
    await page.goto(f"{url}/#customer={user_id}")
    await page.wait_for_selector("#customer table", timeout=30000)
    return await page.evaluate("""() => ({
        note: document.getElementById('customer-note').textContent,
        slots: [...document.querySelectorAll('#customer h3')].map((h) => h.textContent),
        rows: [...document.querySelectorAll('#customer tbody tr')].map((r) => [...r.cells].map((c) => c.textContent))})""")


@asynccontextmanager
async def dashboard_page(url: str, chromium: Path):
    """The dashboard loaded in headless Chromium, and the page errors it raises."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            await page.wait_for_selector("body[data-loaded=true]", timeout=30000)
            yield page, errors
        finally:
            await browser.close()


async def read_page(url: str, chromium: Path, customer: str) -> dict:
    async with dashboard_page(url, chromium) as (page, errors):
        await page.wait_for_function("document.getElementById('kpi-events').textContent !== '–'")
        charts = await read_charts(page)
        cards = await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.card')].map(
            (c) => [c.querySelector('.label').textContent, c.querySelector('.value').textContent]))""")
        evaluation = await page.evaluate("""() => [...document.querySelectorAll('#evaluation tbody tr')].map(
            (row) => [...row.cells].map((cell) => cell.textContent))""")
        experiment = await page.evaluate("""() => [...document.querySelectorAll('#experiment tbody tr')].map(
            (row) => [...row.cells].map((cell) => cell.textContent))""")
        SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        shown = await read_customer(page, url, customer)
        return {"charts": charts, "cards": cards, "evaluation": evaluation, "experiment": experiment,
                "customer": shown, "errors": errors}


def act_on_lists(settings, client, customers) -> int:
    """Each customer views the first item of their list and buys it, naming the list; returns the events sent."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    now = time.time() - 30
    for n, user in enumerate(customers):
        listing = read_recommendations(client, user)
        item = listing.items[0]
        for event, topic in ((ClickEvent(f"act-v{n}", user, item, "view", now, rec_id=listing.rec_id),
                              settings.topic_clicks),
                             (PurchaseEvent(f"act-p{n}", user, f"act-o{n}", [OrderLine(item, 1, 2.0)], now + 1,
                                            rec_id=listing.rec_id), settings.topic_purchases)):
            producer.send(topic, key=user.encode(), value=encode_event(event))
    producer.flush()
    producer.close()
    return 2 * len(customers)


def test_the_dashboard_draws_live_figures_from_a_running_stack(tmp_path, chromium):
    history = simulate_history(n_users=120, days=120, seed=3)
    with private_stack("dashboard", report_dir=str(tmp_path / "reports"), archive_dir="") as stack:
        settings = stack.settings
        write_evaluation(evaluate_all(history, progress=lambda m: None), "simulator",
                         settings.report_dir)
        worker = stack.start_worker()
        url = stack.start_api()
        train_and_publish(settings, history, None, "simulator", True, lambda m: None)
        client = redis.Redis.from_url(settings.redis_url)
        start_experiment(client, new_experiment("dash", [parse_arm("A=latest:50"),
                                                         parse_arm("B=latest,RERANK_SESSION_WEIGHT=0.6:50")], settings))
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        warm_up = wait_for_arm_lists(producer, settings, client, "dash")
        producer.close()
        stats = replay(settings, history.tail(2000))
        sent = warm_up + sum(stats.sent.values())
        assert wait_until_processed(client, sent, worker, timeout=120) == sent
        # A replay sends each order's clicks and purchase together, so few lists are served between
        # them: some shoppers also act on the list they were just shown, as a storefront's would.
        sent += act_on_lists(settings, client, history["user_id"].unique()[-10:])
        assert wait_until_processed(client, sent, worker, timeout=60) == sent
        data = wait_for_timeline(url, points=2)

        customer = history["user_id"].iat[-1]
        page = asyncio.run(read_page(url, chromium, customer))

    assert page["errors"] == []
    charts = page["charts"]
    for chart in charts.values():
        assert chart["drawn"] >= 1 and chart["traces"], chart
    events = next(t for t in charts["chart-events"]["traces"] if t["name"] == "events/s")
    assert len(events["y"]) >= 2 and max(events["y"]) > 0
    quality = charts["chart-quality"]["traces"]
    versions = {scope["model_version"] for scope in data["window"]["scopes"]}
    assert len(quality) == 2 * len(versions) >= 2  # click-through and hit-rate per version
    assert any(value is not None and value > 0 for trace in quality for value in trace["y"]), (quality, data["window"])
    ratio_axis = charts["chart-quality"]
    assert 0 <= ratio_axis["range"][0] < ratio_axis["range"][1] <= 1 and ratio_axis["ticks"]
    assert all(0 <= tick <= 1 for tick in ratio_axis["ticks"]), ratio_axis
    segments = charts["chart-segments"]["traces"]
    assert {t["name"] for t in segments} >= set(data["timeline"][-1]["segments"]) and max(segments[0]["y"]) > 0
    cards = page["cards"]
    assert float(cards["events / s"]) > 0 and cards["freshness p99"].endswith("ms")
    assert int(cards["lists written"].replace(",", "")) > 0
    hybrid = next(row for row in page["evaluation"] if row[0] == "hybrid")
    assert 0 < float(hybrid[2]) <= 1  # ALL MAP@10
    assert SCREENSHOT.stat().st_size > 20_000
    experiment = page["experiment"]
    assert [row[:2] for row in experiment] == [[metric, arm] for metric in ("click-through", "purchase hit-rate",
                                                                            "revenue / customer") for arm in "AB"]
    assert sum(int(row[2].replace(",", "")) for row in experiment[:2]) > 0  # customers exposed
    shown = page["customer"]
    assert shown["note"].startswith("segment: ") and "session of" in shown["note"]
    assert [slot.split(" · ")[0] for slot in shown["slots"]] == ["recs", "buy-again", "discover"]
    assert any(" · arm " in slot for slot in shown["slots"])
    assert shown["rows"] and all(len(row) == 4 and row[3] for row in shown["rows"])  # every item has its reason


async def read_empty_page(url: str, chromium: Path) -> dict:
    async with dashboard_page(url, chromium) as (page, errors):
        return {"charts": await read_charts(page), "errors": errors,
                "experiment": await page.inner_text("#experiment-note")}


def test_a_dashboard_with_nothing_to_show_says_so_instead_of_drawing_empty_axes(stack_settings, tmp_path, chromium):
    from tests.test_events_route import serving

    with serving(stack_settings.replace(report_dir=str(tmp_path / "reports"))) as url:
        page = asyncio.run(read_empty_page(url, chromium))
    assert page["errors"] == []
    for name, chart in page["charts"].items():
        assert chart["traces"] == [] and chart["message"].startswith("no "), (name, chart)
    assert "recsys experiment start" in page["experiment"]

