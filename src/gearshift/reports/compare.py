"""Simulated vs measured: does the simulator predict what the live server did?

Targets: the on-time fraction within `ON_TIME_TOL` (absolute) and p99 latency within
`P99_REL_TOL` of the measured p99 (relative: |simulated - measured| <= 0.15 x measured).
Where a policy is out of tolerance, `SimCheck.why` says what the two runs' own figures show:
a saturated run (one that sheds `SATURATED_SHED` of its requests or more), runs that switched
a different number of times, a static run whose replicas served faster or slower than the
calibrated profile, a p99 that rests on a few answers. And where the run was also replayed
with its replicas' own service times (`experiment.replay`), whether that replay is within both
tolerances: if it is, the simulator models the server, and the host's speed had moved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gearshift.policy import ORACLE
from gearshift.reports.summary import PolicySummary, policy_order

ON_TIME_TOL = 0.03
P99_REL_TOL = 0.15
SATURATED_SHED = 0.05
"""A run that sheds (answers with an error) this share of its requests or more is past its
capacity, where the on-time fraction moves by points for each percent the service time is off."""
SERVICE_DRIFT = 0.05
"""A run of one variant whose mean service time is this far off the simulated run's (from
the calibrated profile) met a host faster or slower than calibrated; the reason says by how
much (a host here drifts 10-20 % over minutes)."""
FEW_TAIL_ANSWERS = 20
"""A p99 resting on fewer answers beyond it than this is a sample of a handful."""


@dataclass(frozen=True)
class RunCounts:
    """What a run did besides its latencies: requests, those answered with an error, switches."""

    requests: int
    errors: int
    switches: int
    service_ms: float = math.nan  # mean service time of the answered requests

    @property
    def shed(self) -> float:
        return self.errors / self.requests if self.requests else math.nan


@dataclass(frozen=True)
class Replay:
    """A live run replayed with its own service times: on-time fraction and p99 (ms)."""

    on_time: float
    p99_ms: float


@dataclass(frozen=True)
class SimCheck:
    """One policy's simulated and measured on-time fraction and p99 (ms), and whether each is
    within tolerance (False when either side is NaN)."""

    policy: str
    on_time_simulated: float
    on_time_measured: float
    p99_simulated_ms: float
    p99_measured_ms: float
    simulated: RunCounts | None = None
    measured: RunCounts | None = None
    replayed: Replay | None = None

    @property
    def on_time_ok(self) -> bool:
        return _on_time_within(self.on_time_simulated, self.on_time_measured)

    @property
    def p99_ok(self) -> bool:
        return _p99_within(self.p99_simulated_ms, self.p99_measured_ms)

    @property
    def p99_rel_error(self) -> float:
        """(simulated - measured) / measured; NaN if measured is 0 or NaN."""
        if not self.p99_measured_ms or math.isnan(self.p99_measured_ms):
            return math.nan
        return (self.p99_simulated_ms - self.p99_measured_ms) / self.p99_measured_ms

    @property
    def ok(self) -> bool:
        return self.on_time_ok and self.p99_ok

    @property
    def replay_ok(self) -> bool | None:
        """Whether the replay is within both tolerances (None without one)."""
        if self.replayed is None:
            return None
        return (_on_time_within(self.replayed.on_time, self.on_time_measured)
                and _p99_within(self.replayed.p99_ms, self.p99_measured_ms))

    @property
    def why(self) -> str:
        """What the runs' own figures say of a check out of tolerance ('' if within, or if
        the counts are not known)."""
        sim, live = self.simulated, self.measured
        if self.ok or sim is None or live is None:
            return ""
        reasons = []
        if max(sim.shed, live.shed) >= SATURATED_SHED:
            reasons.append(f"saturated: {live.shed:.0%} of requests shed live, {sim.shed:.0%} "
                           "simulated; past capacity the on-time fraction and the tail move "
                           "with each percent the service time is off")
        elif sim.switches != live.switches:
            reasons.append(f"switched {live.switches} times live, {sim.switches} simulated: "
                           "the runs served different variants at different moments")
        ratio = live.service_ms / sim.service_ms if sim.service_ms > 0 else math.nan
        if sim.switches == live.switches == 0 and abs(ratio - 1.0) >= SERVICE_DRIFT:
            reasons.append(f"the replicas served at {ratio:.2f} x "
                           f"the calibrated service time ({live.service_ms:.0f} ms mean live, "
                           f"{sim.service_ms:.0f} simulated): the host's speed had moved")
        if not self.p99_ok and live.requests // 100 < FEW_TAIL_ANSWERS:
            reasons.append(f"the p99 of {live.requests} requests rests on its slowest "
                           f"{max(live.requests // 100, 1)}")
        if not reasons:
            reasons.append("neither saturated nor switching differently: the live server's "
                           "service or overhead times under this load left the calibrated "
                           "profile's")
        if self.replayed is not None:
            r = self.replayed
            reasons.append(
                f"replayed with the run's own service times: on time {r.on_time:.3f}, p99 "
                f"{r.p99_ms:.0f} ms, " + ("within both tolerances (the model holds; the "
                                          "host's speed had moved)" if self.replay_ok else
                                          "still off (beyond the service times: overhead, "
                                          "the client, or the model)"))
        return "; ".join(reasons)


def compare(measured: Mapping[str, PolicySummary],
            simulated: Mapping[str, PolicySummary],
            replayed: Mapping[str, PolicySummary] | None = None) -> list[SimCheck]:
    """A check per policy run both ways (the oracle, simulated only, is left out), with its
    replay where `replayed` has one."""
    names = [n for n in policy_order(measured) if n in simulated and n != ORACLE]
    replays = replayed or {}
    return [SimCheck(n, simulated[n].on_time, measured[n].on_time, simulated[n].p99_ms,
                     measured[n].p99_ms, _counts(simulated[n]), _counts(measured[n]),
                     Replay(replays[n].on_time, replays[n].p99_ms) if n in replays else None)
            for n in names]


def _on_time_within(on_time: float, measured: float) -> bool:
    return abs(on_time - measured) <= ON_TIME_TOL + 1e-12


def _p99_within(p99_ms: float, measured_ms: float) -> bool:
    return abs(p99_ms - measured_ms) <= P99_REL_TOL * measured_ms + 1e-9


def _counts(p: PolicySummary) -> RunCounts:
    return RunCounts(p.requests, p.errors, p.switches, p.service_ms)


def compare_json(summary: Mapping[str, object]) -> list[SimCheck]:
    """`compare` on a summary.json document's `policies` and `simulated` entries."""
    def load(key: str) -> dict[str, PolicySummary]:
        entries = summary.get(key) or {}
        if not isinstance(entries, Mapping):
            raise TypeError(f"summary[{key!r}] must be an object of policy summaries")
        return {k: PolicySummary.from_json(v) for k, v in entries.items()}

    return compare(load("policies"), load("simulated"), load("replayed"))
