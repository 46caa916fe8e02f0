"""Simulated vs measured: does the simulator predict what the live server did?

Targets: the on-time fraction within `ON_TIME_TOL` (absolute) and p99 latency within
`P99_REL_TOL` of the measured p99 (relative: |simulated - measured| <= 0.15 x measured).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from gearshift.policy import ORACLE
from gearshift.reports.summary import PolicySummary, policy_order

ON_TIME_TOL = 0.03
P99_REL_TOL = 0.15


@dataclass(frozen=True)
class SimCheck:
    """One policy's simulated and measured on-time fraction and p99 (ms), and whether each is
    within tolerance (False when either side is NaN)."""

    policy: str
    on_time_simulated: float
    on_time_measured: float
    p99_simulated_ms: float
    p99_measured_ms: float

    @property
    def on_time_ok(self) -> bool:
        return abs(self.on_time_simulated - self.on_time_measured) <= ON_TIME_TOL + 1e-12

    @property
    def p99_ok(self) -> bool:
        err = abs(self.p99_simulated_ms - self.p99_measured_ms)
        return err <= P99_REL_TOL * self.p99_measured_ms + 1e-9

    @property
    def p99_rel_error(self) -> float:
        """(simulated - measured) / measured; NaN if measured is 0 or NaN."""
        if not self.p99_measured_ms or math.isnan(self.p99_measured_ms):
            return math.nan
        return (self.p99_simulated_ms - self.p99_measured_ms) / self.p99_measured_ms

    @property
    def ok(self) -> bool:
        return self.on_time_ok and self.p99_ok


def compare(measured: Mapping[str, PolicySummary],
            simulated: Mapping[str, PolicySummary]) -> list[SimCheck]:
    """A check per policy run both ways (the oracle, simulated only, is left out)."""
    names = [n for n in policy_order(measured) if n in simulated and n != ORACLE]
    return [SimCheck(n, simulated[n].on_time, measured[n].on_time, simulated[n].p99_ms,
                     measured[n].p99_ms) for n in names]


def compare_json(summary: Mapping[str, object]) -> list[SimCheck]:
    """`compare` on a summary.json document's `policies` and `simulated` entries."""
    def load(key: str) -> dict[str, PolicySummary]:
        entries = summary.get(key) or {}
        if not isinstance(entries, Mapping):
            raise TypeError(f"summary[{key!r}] must be an object of policy summaries")
        return {k: PolicySummary.from_json(v) for k, v in entries.items()}

    return compare(load("policies"), load("simulated"))
