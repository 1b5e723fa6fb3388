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
    return {"json": json_path, "markdown": md_path}


def evaluation_table(report: EvaluationReport, wide: bool = False) -> Table:
    """The console's table: MAP and NDCG of both views, which fit 80 columns; ``wide`` adds the
    kind, precision, recall and coverage (evaluation.md always has them all)."""
    metrics = ("map", "ndcg", "precision", "recall") if wide else ("map", "ndcg")
    names = {"map": "MAP", "ndcg": "NDCG", "precision": "P", "recall": "R"}
    table = Table("model", *(["kind"] if wide else []), *(f"{view} {names[m]}" for view in ("ALL", "NEW") for m in metrics),
                  *(["cov"] if wide else []), title=f"evaluation, {report.description}")
    for row in report.rows:
        cells = [f"{row[view][m]:.4f}" for view in ("ALL", "NEW") for m in metrics]
        if wide:
            table.add_row(row["model"], row["kind"], *cells, f"{row['ALL']['coverage']:.3f}")
        else:
            table.add_row(row["model"], *cells)
    return table
