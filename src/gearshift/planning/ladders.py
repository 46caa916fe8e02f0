"""Fallback ladders: for each variant, the lighter variants that may answer, at dispatch, a
request it would answer too late. Derived from a profile alone; the planner plans with them and
the `table` policy's decisions carry them. Upgrade ladders: the more accurate variants, which
the switching policies' decisions carry for a request that finds a replica free."""

from __future__ import annotations

import numpy as np

from gearshift.profiling.profile import Profile


def fallback_ladders(profile: Profile) -> dict[str, tuple[str, ...]]:
    """Per variant, the variants both faster (lower mean service time over the profiled
    allocations) and less accurate, most accurate first."""
    variants = profile.variants()
    cost = {v: float(np.mean([np.mean(e.service_ms) for e in profile.entries
                              if e.variant == v])) for v in variants}
    acc = profile.accuracy
    return {v: tuple(sorted((u for u in variants if cost[u] < cost[v] and acc[u] < acc[v]),
                            key=lambda u: -acc[u]))
            for v in variants}


def upgrade_ladders(profile: Profile) -> dict[str, tuple[str, ...]]:
    """Per variant, the more accurate variants, most accurate first: the upgrades a request
    that finds a replica free may be served by (`gearshift.dispatch` decides which, if any)."""
    acc = profile.accuracy
    return {v: tuple(sorted((u for u in profile.variants() if acc[u] > acc[v]),
                            key=lambda u: -acc[u]))
            for v in profile.variants()}
