"""The UCI download path, served from a loopback HTTP server (the real one is not reachable here)."""

import http.server
import io
import threading
import zipfile

import pandas as pd
import pytest

from offline.history import load_history
from offline.retail_history import HistoryError
from offline.uci_download import download_online_retail


def uci_zip() -> bytes:
    sheet = pd.DataFrame({
        "InvoiceNo": ["536365", "C536379"], "StockCode": ["85123A", "85123A"],
        "Description": ["WHITE HEART", "WHITE HEART"], "Quantity": [6, -1],
        "InvoiceDate": pd.to_datetime(["2010-12-01 08:26", "2010-12-01 09:41"]),
        "UnitPrice": [2.55, 2.55], "CustomerID": [17850.0, 14527.0], "Country": ["United Kingdom"] * 2,
    })
    xlsx = io.BytesIO()
    sheet.to_excel(xlsx, index=False)
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("Online Retail.xlsx", xlsx.getvalue())
    return payload.getvalue()


@pytest.fixture
def http_server():
    bodies = {"/online+retail.zip": uci_zip(), "/broken.zip": b"not a zip"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path)
            self.send_response(200 if body else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_download_converts_the_sheet_to_the_loaders_csv(tmp_path, http_server, monkeypatch):
    path = download_online_retail(tmp_path, url=f"{http_server}/online+retail.zip")
    assert path == tmp_path / "online-retail" / "online_retail.csv.gz"
    monkeypatch.setattr("offline.history.download_online_retail",
                        lambda data_dir: download_online_retail(data_dir, url=f"{http_server}/online+retail.zip"))
    history = load_history(str(tmp_path), "retail", download=True)
    assert history.report.rows_in == 2 and history.report.removed["cancellations (InvoiceNo starting with C)"] == 1
    assert history.orders["user_id"].tolist() == ["17850"]


def test_download_failures_are_clear_errors(tmp_path, http_server):
    with pytest.raises(HistoryError, match="not a zip archive"):
        download_online_retail(tmp_path, url=f"{http_server}/broken.zip")
    with pytest.raises(HistoryError, match="cannot download"):
        download_online_retail(tmp_path, url=f"{http_server}/missing.zip")


def test_a_failed_download_falls_back_to_the_simulator_and_says_why(tmp_path, http_server, monkeypatch):
    monkeypatch.setattr("offline.history.download_online_retail",
                        lambda data_dir: download_online_retail(data_dir, url=f"{http_server}/missing.zip"))
    history = load_history(str(tmp_path), "auto", download=True)
    assert history.source.startswith("simulator (cannot download") and len(history.orders) > 1000
    with pytest.raises(HistoryError, match="cannot download"):
        load_history(str(tmp_path), "retail", download=True)
