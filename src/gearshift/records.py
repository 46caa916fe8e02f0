"""Request records on disk: one CSV row per request, the `RequestRecord` field names as columns.

Live runs (the load generator) and simulated runs write the same file, so reports read both
alike. `correct` is written empty where no label exists.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path

from gearshift.types import RequestRecord

CSV_COLUMNS = tuple(f.name for f in fields(RequestRecord))


def write_records(path: str | Path, rows: Iterable[RequestRecord]) -> Path:
    """Write records as CSV; returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            d: dict[str, object] = asdict(row)
            d["correct"] = "" if d.get("correct") is None else int(bool(d["correct"]))
            d["on_time"] = int(bool(d["on_time"]))
            writer.writerow(d)
    return path
