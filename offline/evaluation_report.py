"""Writes an evaluation as JSON and a Markdown table, and renders it for the terminal."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table

from offline.training import EvaluationReport

COLUMNS = ("precision", "recall", "map", "ndcg", "coverage", "novelty")
HEADERS = ("P@10", "R@10", "MAP@10", "NDCG@10", "coverage", "novelty")


def write_evaluation(report: EvaluationReport, origin: str, report_dir: str) -> dict:
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"data_source": origin, "protocol": report.protocol, "test": report.description,
               "train_users": report.train_users, "train_items": report.train_items, "test_users": report.test_users,
               "evaluated_at": time.time(), "validation": report.selection, "models": report.rows}
    json_path = out / "evaluation.json"
    json_path.write_text(json.dumps(payload, indent=2, default=float))
    header = "| model | kind | " + " | ".join(f"ALL {h}" for h in HEADERS) + " | " + " | ".join(f"NEW {h}" for h in HEADERS) + " |"
    lines = [
        "# Offline evaluation\n",
        f"Data: {origin}. Test split: {report.description}; {report.train_users:,} train customers, "
        f"{report.train_items:,} items, {report.test_users:,} test customers. k = 10.\n",
        f"Validation inside the training part: {report.selection.get('protocol')} "
        f"({report.selection.get('protocol_reason')}). Published: recs from "
        f"{report.selection.get('published', {}).get('ALL')}, discover from "
        f"{report.selection.get('published', {}).get('NEW')}.\n",
        header, "|" + "---|" * (2 + 2 * len(HEADERS)),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in report.table(COLUMNS)]
    md_path = out / "evaluation.md"
    md_path.write_text("\n".join(lines) + "\n")
    table = Table("model", "kind", *(f"ALL {h}" for h in ("MAP", "NDCG", "P", "R")), *(f"NEW {h}" for h in ("MAP", "NDCG", "P", "R")),
                  "cov", title=f"evaluation, {report.description}")
    for row in report.rows:
        table.add_row(row["model"], row["kind"], *(f"{row[v][m]:.4f}" for v in ("ALL", "NEW") for m in ("map", "ndcg", "precision", "recall")),
                      f"{row['ALL']['coverage']:.3f}")
    return {"json": json_path, "markdown": md_path, "table": table}
