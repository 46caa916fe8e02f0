"""Request records as numpy columns: read from the shared CSV format or built from records.

The CSV is `gearshift.records`' format (one row per request, the `RequestRecord` field names as
columns, `on_time` written 0/1, `correct` written ''/0/1). Times are seconds on the run's own
clock (0 = start of the run); durations are milliseconds. Latency is measured at the client,
from the scheduled send: `completed_s - scheduled_s`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gearshift.records import CSV_COLUMNS
from gearshift.types import SERVED_AS, RequestRecord

if TYPE_CHECKING:
    from gearshift.sim.records import RequestColumns

STATUS_OK = 200
STATUS_DROPPED = 504  # the server dropped the request: its deadline passed while queued

_Row = dict[str, float | int | str | bool]  # one request, column name -> cell
_OPTIONAL_COLUMNS = ("served_as",)  # files written before it was kept read as ''
_FLOAT_COLUMNS = ("scheduled_s", "sent_s", "completed_s", "queue_ms", "service_ms", "deadline_ms")


@dataclass(frozen=True, eq=False)  # numpy columns: compare with np.array_equal per column
class RecordFrame:
    """One entry per request, in file order.

    `scheduled_s` / `sent_s` / `completed_s`: when the request was due, sent and answered (or
    failed), seconds on the run's clock. `status`: HTTP status (200 = answered). `variant`: the
    variant that answered ('' if none), object array of str. `queue_ms`, `service_ms`: server
    side, ms. `deadline_ms`: the request's deadline, ms. `on_time`: the flag as recorded (bool).
    `correct`: 1.0 / 0.0, NaN where there is no label. `error`: message ('' if none), object.
    `served_as`: `gearshift.types.ServedAs` ('' if not known), object.
    """

    request_id: np.ndarray
    scheduled_s: np.ndarray
    sent_s: np.ndarray
    completed_s: np.ndarray
    status: np.ndarray
    variant: np.ndarray
    queue_ms: np.ndarray
    service_ms: np.ndarray
    deadline_ms: np.ndarray
    on_time: np.ndarray
    correct: np.ndarray
    error: np.ndarray
    served_as: np.ndarray

    def __len__(self) -> int:
        return len(self.request_id)

    @property
    def latency_ms(self) -> np.ndarray:
        """Latency as the user sees it, from when the request was due to when it was answered:
        `(completed_s - scheduled_s) * 1000` (ms), so time a request spent waiting for the
        client (a connection, the sender) counts too; defined for failures too."""
        return np.asarray((self.completed_s - self.scheduled_s) * 1000.0, dtype=np.float64)

    @property
    def answered(self) -> np.ndarray:
        """status == 200."""
        return np.asarray(self.status == STATUS_OK, dtype=np.bool_)

    @property
    def duration_s(self) -> float:
        """From 0 to the last scheduled or completed time (s); 0 for an empty frame."""
        if len(self) == 0:
            return 0.0
        return float(np.nanmax(np.concatenate([self.scheduled_s, self.completed_s])))

    def variants(self) -> list[str]:
        """Distinct answering variants, sorted by name ('' excluded)."""
        return sorted({str(v) for v in self.variant} - {""})

    def select(self, mask: np.ndarray) -> RecordFrame:
        """The rows where `mask` is true (or at the given indices), same column types."""
        return replace(self, **{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    @classmethod
    def from_records(cls, records: Sequence[RequestRecord]) -> RecordFrame:
        return _from_rows([_record_row(r) for r in records])

    @classmethod
    def from_columns(cls, columns: RequestColumns) -> RecordFrame:
        """From a simulated run's columns; arrival = scheduled = sent; no labels."""
        n = len(columns.arrival_s)
        status = np.asarray(columns.status, dtype=np.int64)
        return cls(
            request_id=np.arange(n, dtype=np.int64),
            scheduled_s=np.asarray(columns.arrival_s, dtype=np.float64),
            sent_s=np.asarray(columns.arrival_s, dtype=np.float64),
            completed_s=np.asarray(columns.completed_s, dtype=np.float64),
            status=status,
            variant=np.asarray(columns.variant_names(), dtype=object),
            queue_ms=np.asarray(columns.queue_ms, dtype=np.float64),
            service_ms=np.asarray(columns.service_ms, dtype=np.float64),
            deadline_ms=np.asarray(columns.deadline_ms, dtype=np.float64),
            on_time=np.asarray(columns.on_time, dtype=bool),
            correct=np.full(n, np.nan),
            error=np.array(["" if s == STATUS_OK else f"status {s}" for s in status], dtype=object),
            served_as=np.asarray(columns.served_as_names(), dtype=object),
        )


def read_records(path: str | Path) -> RecordFrame:
    """Read a request-record CSV written by `gearshift.records.write_records`.

    Raises ValueError naming the file and line when a column is missing or a cell is malformed.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS
                   if c not in (reader.fieldnames or []) and c not in _OPTIONAL_COLUMNS]
        if missing:
            raise ValueError(f"{path}: not a request-record file; missing column(s) {missing}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            try:
                rows.append(_parse_row(row))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
    return _from_rows(rows)


def _parse_row(row: Mapping[str, str]) -> _Row:
    out: _Row = {c: float(row[c]) if row[c] != "" else math.nan for c in _FLOAT_COLUMNS}
    out["request_id"] = int(row["request_id"])
    out["status"] = int(row["status"])
    out["variant"] = row["variant"]
    out["on_time"] = _parse_flag(row["on_time"], "on_time")
    correct = row["correct"].strip()
    out["correct"] = math.nan if correct == "" else float(_parse_flag(correct, "correct"))
    out["error"] = row["error"]
    served = row.get("served_as") or ""
    if served not in ("", *SERVED_AS):
        raise ValueError(f"column 'served_as' must be one of {', '.join(SERVED_AS)} or empty, "
                         f"got {served!r}")
    out["served_as"] = served
    return out


def _parse_flag(text: str, column: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false", ""):
        return False
    raise ValueError(f"column {column!r} must be 0 or 1, got {text!r}")


def _record_row(r: RequestRecord) -> _Row:
    row: _Row = {f.name: getattr(r, f.name) for f in fields(r)}
    row["correct"] = math.nan if r.correct is None else float(bool(r.correct))
    return row


def _from_rows(rows: Iterable[_Row]) -> RecordFrame:
    rows = list(rows)

    def col(name: str, dtype: npt.DTypeLike) -> np.ndarray:
        return np.array([r[name] for r in rows], dtype=dtype)

    return RecordFrame(
        request_id=col("request_id", np.int64),
        **{c: col(c, np.float64) for c in _FLOAT_COLUMNS},
        status=col("status", np.int64),
        variant=col("variant", object),
        on_time=col("on_time", bool),
        correct=col("correct", np.float64),
        error=col("error", object),
        served_as=col("served_as", object),
    )
