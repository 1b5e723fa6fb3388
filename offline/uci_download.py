"""Fetches Online Retail from the UCI repository for users who do not have it.

UCI serves a zip with one Excel file; it is converted to the CSV layout the
loader reads (``online-retail/online_retail.csv.gz`` under ``DATA_DIR``).
"""

from __future__ import annotations

import io
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd

from offline.retail_history import RAW_COLUMNS, RETAIL_FILE, HistoryError

UCI_URL = "https://archive.ics.uci.edu/static/public/352/online+retail.zip"
ATTRIBUTION = "UCI Online Retail (Chen, Sain & Guo 2012), CC BY 4.0"


def download_online_retail(data_dir: str | Path, url: str = UCI_URL, timeout: float = 120.0) -> Path:
    """Download, convert and store the data set; return the CSV's path."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except OSError as exc:
        raise HistoryError(f"cannot download {url}: {exc}") from None
    return store_uci_zip(payload, data_dir)


def store_uci_zip(payload: bytes, data_dir: str | Path) -> Path:
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile:
        raise HistoryError("the UCI download is not a zip archive") from None
    sheets = [name for name in archive.namelist() if name.lower().endswith(".xlsx")]
    if not sheets:
        raise HistoryError("the UCI archive holds no .xlsx file")
    with archive.open(sheets[0]) as sheet:
        frame = pd.read_excel(io.BytesIO(sheet.read()), dtype={"InvoiceNo": str, "StockCode": str})
    missing = [c for c in RAW_COLUMNS if c not in frame.columns]
    if missing:
        raise HistoryError(f"the UCI sheet lacks columns {', '.join(missing)}")
    frame = frame[RAW_COLUMNS]
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    target = Path(data_dir) / RETAIL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, index=False, compression="gzip")
    (target.parent / "SOURCE.md").write_text(f"# {ATTRIBUTION}\n\nDownloaded from {UCI_URL}\n")
    return target
