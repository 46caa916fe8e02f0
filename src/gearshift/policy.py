"""What a policy sees and how it is called. The same objects run in the simulator and the server.

Every period the host (simulator or server) builds an `Observation` from what happened in the
last period and calls `Controller.step`, which asks the policy for a `Decision` and returns it;
the host's actuator applies it. Policies are pure: `decide(observation, state) -> (decision,
state)`; smoothing, hysteresis and cool-downs live in their state or in wrappers, never in the
host. Nothing here reads a clock: time arrives in the observation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np

from gearshift.types import JSON, Decision

S = TypeVar("S")

ARRIVAL_PARTS = 4
"""Parts of a period the hosts count arrivals in: where in a period the load changed."""


def arrival_parts(times_s: Sequence[float] | np.ndarray, end_s: float, period_s: float
                  ) -> tuple[int, ...]:
    """The arrivals at `times_s` counted in `ARRIVAL_PARTS` equal parts of the period that ends
    at `end_s`, oldest first; an arrival before the period (a late tick) counts in the first,
    one at or after its end in the last."""
    edges = end_s - period_s + period_s * np.arange(1, ARRIVAL_PARTS) / ARRIVAL_PARTS
    idx = np.searchsorted(edges, np.asarray(times_s, dtype=float), side="right")
    return tuple(int(n) for n in np.bincount(idx, minlength=ARRIVAL_PARTS))


@dataclass(frozen=True)
class ServiceTimes:
    """The inferences (variant on replicas of `threads` threads) that finished service in a
    period: how many, and their service times' sum (ms)."""

    variant: str
    threads: int
    count: int
    total_ms: float


def service_times(parts: Iterable[ServiceTimes]) -> tuple[ServiceTimes, ...]:
    """Parts (an inference each, or a node's period) summed per (variant, threads), in the
    order first met."""
    sums: dict[tuple[str, int], tuple[int, float]] = {}
    for x in parts:
        n, total = sums.get((x.variant, x.threads), (0, 0.0))
        sums[(x.variant, x.threads)] = n + x.count, total + x.total_ms
    return tuple(ServiceTimes(v, t, n, total) for (v, t), (n, total) in sums.items())


@dataclass(frozen=True)
class Observation:
    """The last period, as the host saw it. Times in seconds on the host's clock."""

    t_s: float
    period_s: float
    arrivals: int
    queue_length: int  # waiting, not yet dispatched
    in_flight: int  # dispatched, not yet answered
    completed: int
    missed: int  # answered late, or dropped, in the last period
    latency_p99_ms: float  # of requests completed in the last period; nan if none
    current: Decision  # what is being served now
    arrival_parts: tuple[int, ...] = ()  # the arrivals in ARRIVAL_PARTS equal parts, oldest
    # first (empty if the host does not count them)
    service: tuple[ServiceTimes, ...] = ()  # the period's inferences' service times (empty if
    # the host does not measure them)

    @property
    def rate_rps(self) -> float:
        return self.arrivals / self.period_s

    @property
    def backlog(self) -> int:
        return self.queue_length + self.in_flight


class Policy(Protocol[S]):
    @property
    def name(self) -> str: ...

    def initial_state(self) -> S: ...

    def decide(self, obs: Observation, state: S) -> tuple[Decision, S]: ...


@dataclass(frozen=True)
class ControlStep:
    """One line of the control log; `state` is the policy's state after the step, its fields as
    plain values (NaN as None, anything else not a number, string or bool as its str)."""

    observation: Observation
    decision: Decision
    state: dict[str, JSON] = field(default_factory=dict)


class Controller(Generic[S]):
    """Keeps a policy's state between periods; the host calls `step` once per period.

    `last` is the latest step; with `keep_log` every step is also kept in `log` (the simulator
    keeps them for its report; a long-running server writes each to its log file instead).
    """

    def __init__(self, policy: Policy[S], keep_log: bool = True) -> None:
        self.policy = policy
        self.state: S = policy.initial_state()
        self.keep_log = keep_log
        self.log: list[ControlStep] = []
        self.last: ControlStep | None = None

    def step(self, obs: Observation) -> Decision:
        decision, self.state = self.policy.decide(obs, self.state)
        self.last = ControlStep(obs, decision, {k: _plain(v) for k, v in _fields(self.state)})
        if self.keep_log:
            self.log.append(self.last)
        return decision


def _fields(state: object) -> list[tuple[str, object]]:
    """A state's fields, those of a state it wraps (a dataclass field) in its place."""
    out: list[tuple[str, object]] = []
    for k, v in getattr(state, "__dict__", {}).items():
        wraps = is_dataclass(v) and not isinstance(v, type)
        out += _fields(v) if wraps else [(k, v)]
    return out


def _plain(v: object) -> int | float | str | bool | None:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)


# --- policy names (the registry, `control.factory.REGISTRY`, says what each one is) ----------

TABLE = "table"
QUEUE_AWARE = "queue-aware"
PAPER = "table:paper"  # the paper's controller: the table without fallbacks
ORACLE = "oracle"  # a hindsight schedule: simulated only
STATIC = "static"  # static:VARIANT or static:VARIANT@RxT


def static_name(variant: str, allocation: str = "") -> str:
    """`static:VARIANT`, or `static:VARIANT@RxT` with an allocation."""
    return f"{STATIC}:{variant}@{allocation}" if allocation else f"{STATIC}:{variant}"


def static_variant(name: str) -> str | None:
    """The variant of `static:VARIANT[@RxT]`; None for any other policy name."""
    kind, colon, rest = name.partition(":")
    if kind != STATIC or not colon:
        return None
    return rest.partition("@")[0] or None
