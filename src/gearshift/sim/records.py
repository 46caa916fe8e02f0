"""Simulated requests as columns (numpy arrays), convertible to `RequestRecord`s and CSV.

A million requests as RequestRecord objects cost seconds and hundreds of MB; as columns they
cost a few arrays. Reports that want records call `to_records()`; files use `write_csv`, whose
columns are exactly the `RequestRecord` field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.records import CSV_COLUMNS, write_records
from gearshift.types import SERVED_AS, RequestRecord

STATUS_OK = 200
STATUS_DROPPED = 504  # DeadlineExceeded: the deadline passed while the request was queued
DROPPED_ERROR = "deadline passed while queued"
__all__ = ["CSV_COLUMNS", "RequestColumns", "empty_columns"]


@dataclass(frozen=True)
class RequestColumns:
    """One entry per request, in arrival order; request_id = position.

    `arrival_s`: arrival (= scheduled = sent) time, seconds on the run's clock.
    `completed_s`: when the answer reached the client (seconds); for a dropped request, when
    it was dropped. `status`: 200 answered, 504 dropped at dispatch. `variant_code`: index into
    `variants` of the variant that served it, -1 if dropped. `queue_ms`: arrival to dispatch
    (or drop). `service_ms`: service time on the replica (0 if dropped). `deadline_ms`: the
    request's latency deadline. Latency = completed - arrival = queue + service + overhead.
    `served_as_code`: index into `SERVED_AS` of what the serving variant was to the decision
    in force (`gearshift.types.ServedAs`), -1 if dropped.
    """

    arrival_s: np.ndarray
    completed_s: np.ndarray
    status: np.ndarray
    variant_code: np.ndarray
    queue_ms: np.ndarray
    service_ms: np.ndarray
    deadline_ms: np.ndarray
    variants: tuple[str, ...]
    served_as_code: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def latency_ms(self) -> np.ndarray:
        return np.asarray((self.completed_s - self.arrival_s) * 1000.0, dtype=np.float64)

    @property
    def answered(self) -> np.ndarray:
        return np.asarray(self.status == STATUS_OK, dtype=np.bool_)

    @property
    def on_time(self) -> np.ndarray:
        """Answered within the deadline (a dropped request is never on time)."""
        return self.answered & (self.latency_ms <= self.deadline_ms)

    def variant_names(self) -> np.ndarray:
        """The serving variant's name per request ('' if dropped), as an object array."""
        names = np.array([*self.variants, ""], dtype=object)
        return np.asarray(names[self.variant_code], dtype=object)  # code -1 picks the trailing ''

    def served_as_names(self) -> np.ndarray:
        """`ServedAs` per request ('' if dropped), as an object array."""
        names = np.array([*SERVED_AS, ""], dtype=object)
        return np.asarray(names[self.served_as_code], dtype=object)

    def effective_accuracy(self, accuracy: dict[str, float]) -> float:
        """Mean over requests of accuracy(variant) if on time else 0."""
        if len(self) == 0:
            return float("nan")
        acc = np.array([accuracy[v] for v in self.variants] + [0.0])
        return float(np.mean(np.where(self.on_time, acc[self.variant_code], 0.0)))

    def to_records(self) -> list[RequestRecord]:
        names, roles = self.variant_names(), self.served_as_names()
        on_time = self.on_time
        return [
            RequestRecord(
                request_id=i,
                scheduled_s=float(self.arrival_s[i]),
                sent_s=float(self.arrival_s[i]),
                completed_s=float(self.completed_s[i]),
                status=int(self.status[i]),
                variant=str(names[i]),
                queue_ms=float(self.queue_ms[i]),
                service_ms=float(self.service_ms[i]),
                deadline_ms=float(self.deadline_ms[i]),
                on_time=bool(on_time[i]),
                correct=None,
                error="" if self.status[i] == STATUS_OK else DROPPED_ERROR,
                served_as=roles[i],
            )
            for i in range(len(self))
        ]

    def write_csv(self, path: str | Path) -> Path:
        """Write one row per request in the shared record format (`gearshift.records`)."""
        return write_records(path, self.to_records())


def empty_columns(arrival_s: np.ndarray, deadline_ms: float, variants: tuple[str, ...]) -> (
    RequestColumns
):
    """Columns for `arrival_s` with nothing resolved yet (NaN times, status 0), to fill in."""
    n = len(arrival_s)
    return RequestColumns(
        arrival_s=np.asarray(arrival_s, dtype=np.float64),
        completed_s=np.full(n, np.nan),
        status=np.zeros(n, dtype=np.int16),
        variant_code=np.full(n, -1, dtype=np.int16),
        queue_ms=np.full(n, np.nan),
        service_ms=np.zeros(n),
        deadline_ms=np.full(n, float(deadline_ms)),
        variants=variants,
        served_as_code=np.full(n, -1, dtype=np.int8),
    )
