"""Where every benchmark leaves its figures: bench/results/{name}.json, stamped with the time measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def save_results(name: str, figures: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"measured_at": time.time(), **figures}, indent=2))
    return path
