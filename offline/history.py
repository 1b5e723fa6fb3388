"""Chooses where the purchase history comes from: the real data, a download, or the simulator."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable, Literal

import pandas as pd

from offline.retail_history import CURRENCY, CleaningReport, HistoryError, load_retail, retail_path
from offline.simulator import simulate_history
from offline.uci_download import UCI_URL, download_online_retail

Source = Literal["auto", "retail", "simulator"]


@dataclass
class History:
    orders: pd.DataFrame
    source: str
    report: CleaningReport | None = None
    currency: str = ""  # the symbol prices are in, where the source says


def load_history(
    data_dir: str,
    source: Source = "auto",
    download: bool | None = None,
    ask: Callable[[str], bool] | None = None,
) -> History:
    """Load the real Online Retail data when present; otherwise offer to download
    it (``download=None`` asks through ``ask`` when stdin is a terminal), and
    fall back to the simulator when ``source`` is ``auto``."""
    if source == "simulator":
        return History(simulate_history(), "simulator")
    path = retail_path(data_dir)
    if not path.exists():
        if download is None and ask is not None and sys.stdin.isatty():
            download = ask(f"Online Retail is not in {path.parent}. Download it from UCI ({UCI_URL})?")
        if download:
            try:
                download_online_retail(data_dir)
            except HistoryError as exc:
                if source == "retail":
                    raise
                return History(simulate_history(), f"simulator ({exc}; the simulated shop is used instead)")
        elif source == "retail":
            raise HistoryError(f"{path} does not exist; set DATA_DIR or pass --download")
        else:
            return History(simulate_history(), f"simulator (Online Retail is not at {path}: put the file there, "
                                               f"set DATA_DIR, or pass --download to fetch it from UCI)")
    orders, report = load_retail(path)
    return History(orders, f"Online Retail ({path})", report, CURRENCY)
