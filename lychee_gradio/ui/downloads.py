"""The results as files to download: `<stem>.csv` and `<stem>.json` of every ranking and evaluation.

They are written from what the page itself produced (the ranking or report the run kept in the session's
server-side State), never from what a caller sends, into one folder of this process; each result's files
are deleted after `KEEP_SECONDS` (the server sets it from `--temp-file-minutes`), and all at exit. Gradio
serves a copy from its own cache, which it deletes on the same schedule (`Blocks(delete_cache=...)`).
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

KEEP_SECONDS = 3600.0
_ROOT: Path | None = None
_LOCK = threading.Lock()


def _folder() -> Path:
    """A fresh folder for one result's files, under this process's own; old ones are swept first."""
    global _ROOT
    with _LOCK:
        if _ROOT is None or not _ROOT.is_dir():
            _ROOT = Path(tempfile.mkdtemp(prefix=f"lychee-results-{os.getpid()}-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        now = time.time()
        for old in _ROOT.iterdir():
            try:
                if now - old.stat().st_mtime > KEEP_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        return Path(tempfile.mkdtemp(dir=_ROOT))


def write_downloads(rows: list[dict] | dict | None, stem: str) -> list[str] | None:
    """The results as `<stem>.json` and `<stem>.csv` (one row per result; an evaluation report: its metrics, and
    its thresholds as `calibration.json`, the file `lychee load --calibration` reads)."""
    if not rows:
        return None
    folder = _folder()
    extra = []
    if isinstance(rows, dict) and rows.get("calibration"):
        extra.append(folder / "calibration.json")
        extra[0].write_text(json.dumps(rows["calibration"], indent=2, ensure_ascii=False), encoding="utf-8")
    json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
    json_path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    if isinstance(rows, dict):  # an evaluation report: the page's table, every column of it
        models = rows["models"]
        table = [
            {
                "metric": key,
                "first_stage": value,
                **{name: entry["reranked"][key] for name, entry in models.items()},
                **{f"change {name}": entry["difference"][key] for name, entry in models.items()},
            }
            for key, value in rows["first_stage"].items()
        ]
    else:
        table = rows
    with csv_path.open("w", newline="", encoding="utf-8-sig") as file:  # the BOM lets Excel read UTF-8
        writer = csv.DictWriter(file, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return [str(csv_path), str(json_path), *map(str, extra)]


def ranking_downloads(stem: str):
    """The downloads event of a ranking tab: the rows of the session's kept ranking (a `gr.State`) that the
    page shows under "Hide scores below"."""
    from .forms import above

    def write(ranking: dict | None, min_score=0) -> list[str] | None:
        if not ranking:
            return None
        rows, _, _ = above(ranking["rows"], ranking["rows"], min_score, ranking.get("bands"))
        return write_downloads(rows, stem)

    return write
