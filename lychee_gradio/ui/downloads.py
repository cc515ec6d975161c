"""The results as files to download: `<stem>.csv` and `<stem>.json` of every ranking and evaluation."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path


def write_downloads(rows: list[dict] | dict | None, stem: str) -> list[str] | None:
    """The results as `<stem>.json` and `<stem>.csv` (one row per result; an evaluation report: its metrics)."""
    if not rows:
        return None
    folder = Path(tempfile.mkdtemp(prefix="lychee-results-"))
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    if isinstance(rows, dict):  # an evaluation report: the page's table, every column of it
        models = rows["models"]
        table = [{"metric": key, "first_stage": value,
                  **{name: entry["reranked"][key] for name, entry in models.items()},
                  **{f"change {name}": entry["difference"][key] for name, entry in models.items()}}
                 for key, value in rows["first_stage"].items()]
    else:
        table = rows
    with csv_path.open("w", newline="", encoding="utf-8-sig") as file:  # the BOM lets Excel read UTF-8
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return [str(csv_path), str(json_path)]
