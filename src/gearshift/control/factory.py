"""Build a policy from its command-line name: `table`, `queue-aware` or `static:VARIANT`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from gearshift.control.base import Policy
from gearshift.control.policies import (
    ExpectedTablePolicy,
    QueueAwarePolicy,
    StaticPolicy,
    TablePolicy,
    fallback_ladders,
)
from gearshift.errors import SpecError
from gearshift.planning.table import PolicyTable
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation, Decision, allocations_for

POLICY_NAMES = "table, table:paper, queue-aware, static:VARIANT or static:VARIANT@RxT"


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
    # the ladders the table was planned with; for a table planned without, the profile's
    fallbacks = ({v: tuple(f) for v, f in table.fallbacks.items()}
                 or (fallback_ladders(profile) if profile is not None else {}))
    first = replace(first, fallbacks=fallbacks.get(first.variant, ()))
    if name == "table":
        if profile is None or not table.grid:
            return table_policy(table, fallbacks), first
        return QueueAwarePolicy(table, profile, deadline_ms, table_policy(table, fallbacks),
                                rescues=False, name="table"), first
    if name == "table:paper":
        return TablePolicy(table, name=name), replace(first, fallbacks=())
    if name == "queue-aware":
        if profile is None:
            raise SpecError("the queue-aware policy needs the profile (--profile profile.json)")
        return QueueAwarePolicy(table, profile, deadline_ms,
                                table_policy(table, fallbacks)), first
    if name.startswith("static:"):
        variant, _, alloc = name.split(":", 1)[1].partition("@")
        if variant not in variants:
            raise SpecError(
                f"{name}: no such variant {variant!r}; choose one of {', '.join(variants)}")
        allocation = (_allocation(name, alloc, table.cores) if alloc
                      else best_allocation(table, profile, variant))
        decision = Decision(variant, allocation, "static")
        return StaticPolicy(decision, name=name), decision
    raise SpecError(f"unknown controller {name!r}; use {POLICY_NAMES}")


def table_policy(table: PolicyTable, fallbacks: dict[str, tuple[str, ...]]
                 ) -> ExpectedTablePolicy | TablePolicy:
    """The `table` controller: on the planner's grid (`ExpectedTablePolicy`); for a table
    without one (written by hand), the paper's range lookup with these fallbacks."""
    if table.grid:
        return ExpectedTablePolicy.from_table(table, fallbacks)
    return TablePolicy(table, fallbacks=fallbacks)


def _allocation(name: str, text: str, cores: int) -> Allocation:
    """The RxT of `static:V@RxT`, which must use exactly the pool's `cores`."""
    options = ", ".join(str(a) for a in allocations_for(cores))
    try:
        allocation = Allocation.parse(text)
    except ValueError:
        raise SpecError(f"{name}: {text!r} is not an RxT; use one of {options}") from None
    if allocation not in allocations_for(cores):
        raise SpecError(f"{name}: {allocation} does not use the {cores} cores; use one of "
                        f"{options}")
    return allocation
