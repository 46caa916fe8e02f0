"""Build a policy from its command-line name: `table`, `queue-aware` or `static:VARIANT`."""

from __future__ import annotations

from typing import Any

import numpy as np

from gearshift.control.base import Policy
from gearshift.control.policies import QueueAwarePolicy, StaticPolicy, TablePolicy
from gearshift.errors import SpecError
from gearshift.planning.table import PolicyTable
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation, Decision, allocations_for

POLICY_NAMES = "table, queue-aware or static:VARIANT"


def best_allocation(table: PolicyTable, profile: Profile | None, variant: str) -> Allocation:
    """The R x T with the highest mean effective accuracy for `variant` over the planner's load
    grid (the baseline a user would pick for a static deployment); without a grid, the one with
    the highest measured throughput; without a profile, the one the table serves it with, else
    the most replicas."""
    points = [p for p in table.grid if p.variant == variant]
    if points:
        allocs = sorted({(p.replicas, p.threads) for p in points})
        score = {a: np.mean([p.effective_accuracy for p in points
                             if (p.replicas, p.threads) == a]) for a in allocs}
        return Allocation(*max(allocs, key=lambda a: score[a]))
    entries = [e for e in profile.entries if e.variant == variant] if profile else []
    if entries:
        return max(entries, key=lambda e: e.throughput_rps).allocation
    served = [r.decision.allocation for r in table.ranges if r.variant == variant]
    return served[0] if served else allocations_for(table.cores)[0]


def make_policy(name: str, table: PolicyTable, profile: Profile | None, deadline_ms: float,
                variants: list[str]) -> tuple[Policy[Any], Decision]:
    """The policy and the decision to start from (what it would pick at the lightest load)."""
    first = table.ranges[0].decision
    if name == "table":
        return TablePolicy(table), first
    if name == "queue-aware":
        if profile is None:
            raise SpecError("the queue-aware policy needs the profile (--profile profile.json)")
        return QueueAwarePolicy(table, profile, deadline_ms), first
    if name.startswith("static:"):
        variant = name.split(":", 1)[1]
        if variant not in variants:
            raise SpecError(
                f"static:{variant}: no such variant; choose one of {', '.join(variants)}")
        decision = Decision(variant, best_allocation(table, profile, variant), "static")
        return StaticPolicy(decision, name=name), decision
    raise SpecError(f"unknown controller {name!r}; use {POLICY_NAMES}")
