"""Frozen value types shared by every stage (zoo -> profiling -> planning -> serving/control -> reports).

Times crossing module boundaries carry their unit in the name (`latency_ms`, `rate_rps`,
`t_s`). Nothing here imports a web framework, a process library or ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from itertools import pairwise
from typing import Literal, NotRequired, TypeAlias, TypedDict

JSON: TypeAlias = Mapping[str, "JSON"] | Sequence["JSON"] | str | int | float | bool | None
"""A value `json.dumps` writes as is: objects (str keys), arrays, strings, numbers, booleans,
null. Read-only views (Mapping, Sequence), so a `dict[str, float]` is one too."""
JSONObject: TypeAlias = Mapping[str, JSON]


@dataclass(frozen=True, order=True)
class Allocation:
    """How a core budget is split: `replicas` worker processes x `threads` intra-op threads each."""

    replicas: int
    threads: int

    def __post_init__(self) -> None:
        if self.replicas < 1 or self.threads < 1:
            raise ValueError(f"allocation needs replicas >= 1 and threads >= 1, got {self}")

    @property
    def cores(self) -> int:
        return self.replicas * self.threads

    def __str__(self) -> str:
        return f"{self.replicas}x{self.threads}"

    @classmethod
    def parse(cls, text: str) -> Allocation:
        """Parse `RxT` (for example `2x1`)."""
        try:
            r, t = text.lower().split("x")
            return cls(int(r), int(t))
        except ValueError as exc:
            raise ValueError(f"allocation {text!r} is not of the form RxT, e.g. 2x1") from exc


def allocations_for(cores: int) -> list[Allocation]:
    """Every R x T with R * T == cores, most replicas first (16x1, 8x2, ... 1x16)."""
    return [Allocation(cores // t, t) for t in range(1, cores + 1) if cores % t == 0]


SAFE_QUANTILE = 0.9
"""With fallbacks, a request is served by the first of the variant in force and its fallbacks
whose service time at its `safe_quantiles` entry (at least this), plus the overhead, still
makes its deadline."""
MAX_SAFE_QUANTILE = 0.99


def safe_quantiles(accuracies: Sequence[float]) -> tuple[float, ...]:
    """For a fallback ladder (accuracies, most accurate first): how sure a dispatch must be
    that each entry makes the deadline to prefer it to the next. Entry m, on time with
    probability p, is worth p x a_m; the next, if surely on time, a_(m+1); so m needs
    p >= a_(m+1) / a_m (ResNet-50 before ResNet-34: 0.963, not 0.9), never less than
    SAFE_QUANTILE nor more than MAX_SAFE_QUANTILE. The last entry: SAFE_QUANTILE."""
    acc = [float(a) for a in accuracies]
    if not acc:
        return ()
    ratios = [nxt / cur if cur > 0 else 1.0 for cur, nxt in pairwise(acc)]
    return (*(min(max(SAFE_QUANTILE, r), MAX_SAFE_QUANTILE) for r in ratios), SAFE_QUANTILE)


DropRule = Literal["hopeless", "expired", "never"]
"""When a request with a deadline is answered 504 instead of served, decided at dispatch:
"expired": its deadline has passed; "hopeless": also when the variant's median service time
and the path's mean overhead would overrun it; "never": every request is served, however late
(`gearshift.dispatch`)."""


class AccuracyKind(str, Enum):
    DECLARED = "declared"
    MEASURED = "measured"


@dataclass(frozen=True)
class Decision:
    """What a policy wants served from now on. An actuator applies it; a policy never acts."""

    variant: str
    allocation: Allocation
    reason: str = ""
    fallbacks: tuple[str, ...] = ()
    """Lighter variants, in order, that may answer a request `variant` would answer too late
    (tried at dispatch when the drop rule would drop it; empty: drop it)."""
    upgrades: tuple[str, ...] = ()
    """More accurate variants, most accurate first, one of which may answer a request that
    finds a replica free with nothing behind it, when its deadline and the load leave room
    (`gearshift.dispatch`; empty: the variant serves it)."""

    @property
    def key(self) -> tuple[str, int, int]:
        """(variant, replicas, threads): what is served and how, without why."""
        return self.variant, self.allocation.replicas, self.allocation.threads


ServedAs = Literal["", "in_force", "fallback", "upgrade", "named"]
"""What an answered request's variant was to the decision in force when it was dispatched
(`gearshift.dispatch.served_as`): that decision's variant, one of its fallbacks (lighter, for a
request it would answer late), one of its upgrades (more accurate, for a request that found a
replica free) or the variant the request named; '' for a request not answered, or where it is
not known (records written before it was kept)."""
SERVED_AS: tuple[ServedAs, ...] = ("in_force", "fallback", "upgrade", "named")


@dataclass(frozen=True)
class RequestRecord:
    """One request as seen end to end; live runs and the simulator write the same records.

    Times are seconds on the run's own clock (0 = start of the run), durations milliseconds.
    `correct` is None where no label exists. `status` is the HTTP status (200 = answered).
    `served_as`: `ServedAs`.
    """

    request_id: int
    scheduled_s: float
    sent_s: float
    completed_s: float
    status: int
    variant: str
    queue_ms: float
    service_ms: float
    deadline_ms: float
    on_time: bool
    correct: bool | None = None
    error: str = ""
    served_as: ServedAs = ""

    @property
    def latency_ms(self) -> float:
        return (self.completed_s - self.sent_s) * 1000.0


@dataclass(frozen=True)
class PoolStatus:
    """A snapshot of the replica pool for status pages and metrics."""

    variant: str
    allocation: Allocation
    workers_ready: int
    queue_length: int
    in_flight: int
    switches: int
    allocation_changes: int
    worker_restarts: int
    fallbacks: int = 0  # requests answered by a lighter variant than the one in force so far
    upgrades: int = 0  # ... by a more accurate one (`Decision.upgrades`)
    extra: dict[str, float] = field(default_factory=dict)


# --- the control log's lines (written by the server, read by the reports) -----------------


class DecisionJSON(TypedDict):
    """A decision in a control-log line."""

    variant: str
    replicas: int
    threads: int
    reason: str


class ObservationJSON(TypedDict):
    """What a control-log line's period saw: `policy.Observation`'s fields and its rate
    (`latency_p99_ms` None when nothing completed). Readers need only the required ones."""

    period_s: float
    arrivals: int
    rate_rps: float
    queue_length: int
    current: DecisionJSON
    t_s: NotRequired[float]
    in_flight: NotRequired[int]
    completed: NotRequired[int]
    missed: NotRequired[int]
    latency_p99_ms: NotRequired[float | None]
    arrival_parts: NotRequired[list[int]]
    service: NotRequired[list[tuple[str, int, int, float]]]  # (variant, threads, count, total ms)


class ControlLine(TypedDict):
    """One control-log line (`serving.control_loop.step_json` writes it, `reports.control_log`
    reads it); a live server also writes which policy ran (`policy`) and when, on the wall
    clock (`unix_s`)."""

    t_s: float
    observation: ObservationJSON
    decision: DecisionJSON
    state: NotRequired[dict[str, JSON]]
    policy: NotRequired[str]
    unix_s: NotRequired[float]


class StatusDoc(TypedDict):
    """A server's `GET /gearshift/status` (and `PUT /gearshift/controller`'s answer): what it
    serves, its queue and counters, the running policy and its last decision."""

    ready: bool
    uptime_s: float
    application: str
    variant: str
    replicas: int
    threads: int
    workers_ready: int
    queue_length: int
    in_flight: int
    rate_rps: float
    switches: int
    allocation_changes: int
    worker_restarts: int
    served: int
    failed: int
    expired: int
    rejected: int
    fallbacks: int
    upgrades: int
    disconnects: int
    policy: str
    last_decision: JSONObject | None  # the `Decision`'s fields
    last_error: str
    nodes: NotRequired[list[JSONObject]]  # on a cluster (`gearshift.ray`): each node's pool
