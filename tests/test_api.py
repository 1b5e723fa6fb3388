"""The storefront API against real Redis and a real broker: reads, input checks, errors, health, limits."""

import json
from collections import Counter

import pytest
import redis
from fastapi.testclient import TestClient

from streams import redis_keys
from streams.api.app import create_api
from streams.local_stack import free_port, redis_command, start_server, stop_pid
from streams.recommendation_store import build_list, encode_list

pytestmark = pytest.mark.integration

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def api(stack_settings, redis_client, tmp_path):
    settings = stack_settings.replace(report_dir=str(tmp_path / "reports"))
    with TestClient(create_api(settings)) as client:
        yield client


def store_list(redis_client, user_id, items, version="v1"):
    listing = build_list(user_id, [(item, 1.0 / (n + 1)) for n, item in enumerate(items)], version)
    key = redis_keys.recs(user_id) if user_id else redis_keys.POPULAR
    redis_client.set(key, encode_list(listing))
    return listing


def test_a_customers_list_is_served_cut_to_k(api, redis_client):
    stored = store_list(redis_client, "17850", ["A", "B", "C", "D"])
    body = api.get("/recs/17850", params={"k": 2}).json()
    assert body["items"] == ["A", "B"] and body["scores"] == stored.scores[:2]
    assert body["rec_id"] == stored.rec_id and body["model_version"] == "v1" and body["fallback"] is False


def test_excluded_items_are_dropped_for_one_request_and_the_list_fills_k_from_its_tail(api, redis_client):
    store_list(redis_client, "17850", ["A", "B", "C", "D", "E"])
    body = api.get("/recs/17850", params={"k": 3, "exclude": "B,D,ZZ"}).json()
    assert body["items"] == ["A", "C", "E"] and body["scores"] == [1.0, round(1 / 3, 2), 0.2]
    assert api.get("/recs/17850", params={"k": 3}).json()["items"] == ["A", "B", "C"]  # for that request only


def test_an_unknown_customer_gets_the_popular_list_marked_as_fallback(api, redis_client):
    assert api.get("/recs/new-customer").status_code == 404  # nothing published yet
    store_list(redis_client, "", ["P", "Q"])
    body = api.get("/recs/new-customer").json()
    assert body["fallback"] is True and body["user_id"] == "new-customer" and body["items"] == ["P", "Q"]


def test_buy_again_and_discover_lists_are_served_from_their_own_keys(api, redis_client):
    again = build_list("17850", [("A", 2.0), ("B", 1.0)], "v2")
    redis_client.set(redis_keys.buy_again("17850"), encode_list(again))
    redis_client.set(redis_keys.discover("17850"), encode_list(build_list("17850", [("X", 0.9), ("Y", 0.5)], "v2")))
    store_list(redis_client, "", ["P", "Q"])
    body = api.get("/recs/17850/buy-again", params={"k": 1}).json()
    assert body["items"] == ["A"] and body["rec_id"] == again.rec_id and body["fallback"] is False
    assert api.get("/recs/17850/discover").json()["items"] == ["X", "Y"]
    # Nobody to rebuy for a customer who never bought; discovery falls back on popular items.
    assert api.get("/recs/new-customer/buy-again").status_code == 404
    fallback = api.get("/recs/new-customer/discover").json()
    assert fallback["fallback"] is True and fallback["items"] == ["P", "Q"]


@pytest.mark.parametrize("path, params, parameter", [
    ("/recs/has%20space", {}, "user_id"),
    ("/recs/" + "x" * 129, {}, "user_id"),
    ("/recs/tab%09id", {}, "user_id"),
    ("/recs/u1", {"k": 0}, "k"),
    ("/recs/u1", {"k": 101}, "k"),
    ("/recs/u1", {"k": HOSTILE}, "k"),
    ("/similar/has%20space", {}, "item_id"),
    ("/popular", {"segment": "s" * 129}, "segment"),
])
def test_bad_input_is_a_422_that_names_the_parameter_and_never_repeats_the_input(api, path, params, parameter):
    response = api.get(path, params=params)
    assert response.status_code == 422 and response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert message.startswith(f"{parameter}:")
    assert "has space" not in message and "xxxxxxxx" not in message and "script" not in message


def test_similar_items_segments_and_popular_lists(api, redis_client):
    redis_client.set(redis_keys.similar("A"), json.dumps({"items": ["B", "C", "D"], "scores": [0.9, 0.5, 0.1]}))
    redis_client.hset(redis_keys.segment_bucket("17850"), "17850", "high-value frequent")
    listing = build_list("", [("H", 1.0), ("I", 0.5)], "v2")
    redis_client.set(redis_keys.segment_popular("high-value frequent"), encode_list(listing))
    store_list(redis_client, "", ["P", "Q", "R"], version="v2")

    assert api.get("/similar/A", params={"k": 2}).json() == {"item_id": "A", "items": ["B", "C"], "scores": [0.9, 0.5]}
    assert api.get("/segments/17850").json() == {"user_id": "17850", "segment": "high-value frequent"}
    assert api.get("/popular", params={"segment": "high-value frequent"}).json()["items"] == ["H", "I"]
    overall = api.get("/popular", params={"k": 2}).json()
    assert overall == {"segment": None, "items": ["P", "Q"], "scores": [1.0, 0.5], "model_version": "v2"}
    for path, params in (("/similar/unknown", {}), ("/segments/unknown", {}), ("/popular", {"segment": HOSTILE})):
        response = api.get(path, params=params)
        assert response.status_code == 404 and "script" not in response.text


def test_health_checks_redis_and_kafka(api, stack_settings, tmp_path):
    report = api.get("/health")
    assert report.status_code == 200
    assert report.json()["redis"]["ok"] and report.json()["kafka"]["ok"] and report.json()["kafka"]["brokers"] >= 1
    unreachable = stack_settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
                                         report_dir=str(tmp_path / "reports"))
    with TestClient(create_api(unreachable)) as client:
        degraded = client.get("/health")
    assert degraded.status_code == 503 and degraded.json()["kafka"]["ok"] is False and degraded.json()["redis"]["ok"]


def test_oversized_requests_are_refused_unread(api):
    assert api.post("/recs/u1", content=b"x" * 5000).status_code == 413
    long_url = api.get("/recs/u1", params={"k": "1" * 3000})
    assert long_url.status_code == 414 and "1111" not in long_url.text
    assert api.get("/no/such/route").json() == {"error": "no such route"}
    assert api.get("/recs/u1").headers["x-content-type-options"] == "nosniff"


def test_metrics_count_requests_by_route_template(api, redis_client):
    store_list(redis_client, "", ["P"])
    for user in ("a", "b", "c"):
        api.get(f"/recs/{user}")
    page = api.get("/metrics").text
    assert 'recsys_api_requests_total{route="/recs/{user_id}",status="200"} 3.0' in page
    assert "recsys_api_request_seconds_bucket" in page


def test_the_openapi_description_covers_every_route_with_its_bounds(api):
    spec = api.get("/openapi.json").json()
    assert {"/recs/{user_id}", "/similar/{item_id}", "/segments/{user_id}", "/popular", "/health", "/metrics",
            "/dashboard/data"} <= set(spec["paths"])
    k = next(p for p in spec["paths"]["/recs/{user_id}"]["get"]["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, 100)


def test_dashboard_page_its_charting_library_and_reports(api, tmp_path):
    assert "Plotly.react" in api.get("/").text
    js = api.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert api.get("/reports/x").status_code == 404  # before any report folder exists
    assert "No reports yet" in api.get("/reports/").text
    reports = tmp_path / "reports" / "eda"
    reports.mkdir(parents=True)
    (reports / "eda.html").write_text("<h1>EDA</h1>")
    (tmp_path / "secret.txt").write_text("not a report")
    assert api.get("/reports/eda/eda.html").text == "<h1>EDA</h1>"
    assert '<a href="/reports/eda/eda.html">Exploratory data analysis</a>' in api.get("/reports/").text
    assert api.get("/reports/../secret.txt").status_code == 404
    assert api.get("/reports/%2e%2e/secret.txt").status_code == 404
    data = api.get("/dashboard/data").json()
    assert data["reports"] == [{"href": "/reports/eda/eda.html", "title": "Exploratory data analysis"}]
    assert data["evaluation"] is None and data["window"]["scopes"] == []


def test_a_redis_restart_costs_no_request_and_an_outage_is_a_503(stack_settings, tmp_path):
    port = free_port()
    own = start_server("redis", redis_command(port), port, tmp_path / "redis.log")
    settings = stack_settings.replace(redis_url=own.url, report_dir=str(tmp_path / "reports"))
    writer = redis.Redis.from_url(own.url)
    try:
        with TestClient(create_api(settings)) as client:
            store_list(writer, "", ["P1", "P2"])
            assert all(client.get(f"/recs/u{n}").status_code == 200 for n in range(20))  # fills the pool
            stop_pid(own.pid)
            down = client.get("/recs/u1")
            assert down.status_code == 503 and down.json() == {"error": "the recommendation store is unavailable; "
                                                                        "retry shortly"}
            assert client.get("/health").status_code == 503
            own = start_server("redis", redis_command(port), port, tmp_path / "redis.log")
            store_list(writer, "", ["P1", "P2"])
            answers = Counter(client.get(f"/recs/u{n}").status_code for n in range(600))
            assert answers == Counter({200: 600})
            assert client.get("/health").json()["redis"]["ok"]
    finally:
        writer.close()
        stop_pid(own.pid)
