"""The EDA and segment reports render from simulated history: files exist and findings hold numbers."""

import html
import re

import pytest

from models.segments import CustomerSegmentation
from offline.eda_report import EdaReport
from offline.retail_history import load_retail
from offline.segment_report import write_segment_report
from offline.simulator import simulate_history
from offline.training import interactions


def test_eda_report_has_every_chart_with_a_computed_finding(tmp_path):
    history = simulate_history(n_users=120)
    report = EdaReport(history, tmp_path, "simulator")
    page = report.build().read_text()
    assert [c.slug for c in report.charts] == ["pareto", "top_products", "categories", "prices", "seasonality", "countries"]
    for chart in report.charts:
        assert chart.path.stat().st_size > 5000 and chart.path.read_bytes()[:4] == b"\x89PNG"
        assert re.search(r"\d", chart.finding), chart.finding
        assert chart.finding in html.unescape(page)
    top20 = history.assign(r=history.quantity * history.price).groupby("user_id")["r"].sum().sort_values(ascending=False)
    share = top20.head(int(0.2 * len(top20))).sum() / top20.sum()
    assert f"{share:.0%} of revenue" in report.charts[0].finding
    assert page.count("data:image/png;base64,") == 6  # self-contained


def test_segment_report_files(tmp_path):
    seg = CustomerSegmentation(k_range=range(3, 5)).fit(interactions(simulate_history(n_users=100)))
    paths = write_segment_report(seg, tmp_path)
    assert all(p.exists() for p in paths.values())
    assert paths["customers"].read_text().count("\n") == 101


def test_the_evaluation_table_fits_80_columns_and_wide_shows_everything():
    from types import SimpleNamespace

    from rich.console import Console

    from offline.evaluation_report import evaluation_table
    scores = {"map": 0.2564, "ndcg": 0.3312, "precision": 0.1201, "recall": 0.2233, "coverage": 0.412}
    rows = [{"model": name, "kind": "component", "ALL": scores, "NEW": scores}
            for name in ("popularity", "repeat + popularity", "item-item co-occurrence (SAR-style)", "hybrid (published)")]
    report = SimpleNamespace(rows=rows, description="global-time cut at 2011-11-09, 1,395 test customers")
    narrow = Console(width=80, record=True)
    narrow.print(evaluation_table(report))
    text = narrow.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "0.2564" in text and "0.3312" in text and "item-item co-occurrence" in text  # long names wrap, never cut
    wide = Console(width=160, record=True)
    wide.print(evaluation_table(report, wide=True))
    text = wide.export_text()
    assert "0.1201" in text and "0.412" in text and "component" in text


@pytest.mark.retail
def test_the_online_retail_findings_hold_once_cancellations_are_netted(retail_csv, tmp_path):
    history, cleaning = load_retail(retail_csv)
    report = EdaReport(history, tmp_path, "Online Retail", cleaning.cancellations, "£")
    report.build()
    findings = {chart.slug: chart.finding for chart in report.charts}
    assert report.cancellations_matched > 1000
    # The 80,995 units of PAPER CRAFT, LITTLE BIRDIE were cancelled the same day (C581484), the 74,215
    # MEDIUM CERAMIC TOP STORAGE JARs too: neither is a best seller.
    top = findings["top_products"]
    assert "PAPER CRAFT" not in top and "MEDIUM CERAMIC TOP STORAGE JAR" not in top and "£" in top
    net = report.df
    assert not ((net["item_id"] == "23843") & (net["user_id"] == "16446")).any()
    best = net.groupby("item_id").agg(revenue=("revenue", "sum"), title=("description", "first")).nlargest(1, "revenue")
    assert f"the first is {best['title'].iat[0]}" in top
    spend = net.groupby("user_id")["revenue"].sum().sort_values(ascending=False)
    assert f"bring {spend.head(int(0.2 * len(spend))).sum() / spend.sum():.0%} of revenue" in findings["pareto"]
    # December 2011 has 9 days of data: it is marked partial and not compared with full months.
    assert {str(month): days for month, days in report.partial_months().items()} == {"2011-12": 9}
    monthly = net[net["timestamp"] < "2011-12-01"].groupby(net["timestamp"].dt.to_period("M"))["revenue"].sum()
    assert f"The best full month is {monthly.idxmax()}" in findings["seasonality"]
