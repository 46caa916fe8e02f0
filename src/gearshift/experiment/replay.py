"""A live run replayed in the simulator with the service times its replicas really took.

The simulated twin of a live run draws its service times from the calibrated profile; the host
they ran on may since have served 10-20 % faster or slower, and stalled in its own places. To
tell a simulator that models the server wrongly from a host whose speed moved, the run is
simulated once more on a profile whose service times are the run's own: for every variant the
run answered at least `MIN_ANSWERS` requests with (and its twin too), each of the variant's
profiled samples is scaled by the ratio of the live to the twin's service time at its quantile,
so the live run's mean and its tail (a stall, a slow phase) carry over to every R x T of the
variant. Nothing else changes: arrivals, overheads, the policy and its table are the twin's.
"""

from __future__ import annotations

import numpy as np

from gearshift.profiling.profile import Profile
from gearshift.reports.frame import RecordFrame

MIN_ANSWERS = 20
"""Answers of a variant, in the live run and in its twin, below which its service time is left
as profiled: a handful of them says little of a quantile."""

QUANTILES = np.linspace(0.0, 100.0, 101)


def service_ratios(live: RecordFrame, twin: RecordFrame) -> dict[str, np.ndarray]:
    """Per variant answered `MIN_ANSWERS` times or more in both runs: live over twin service
    time at each of `QUANTILES` (percent)."""
    out: dict[str, np.ndarray] = {}
    for variant in sorted(set(live.variant[live.answered]) & set(twin.variant[twin.answered])):
        mine = live.service_ms[live.answered & (live.variant == variant)]
        theirs = twin.service_ms[twin.answered & (twin.variant == variant)]
        if min(len(mine), len(theirs)) < MIN_ANSWERS:
            continue
        ours = np.percentile(theirs, QUANTILES)
        if np.any(ours <= 0.0):
            continue
        out[str(variant)] = np.percentile(mine, QUANTILES) / ours
    return out


def replay_profile(profile: Profile, live: RecordFrame, twin: RecordFrame) -> Profile:
    """`profile` with the service times of the variants `service_ratios` covers mapped to the
    live run's (the module docstring); each entry's throughput scaled by its mean's change, or
    for a path-bound entry, whose throughput is the serving path's, by the change of the core
    time a request takes, path included (`Profile.core_ms`): a replica's fraction of a ms
    served 1.5 x slower leaves the HTTP path's capacity nearly as it was."""
    ratios = service_ratios(live, twin)
    entries = []
    for e in profile.entries:
        ratio = ratios.get(e.variant)
        if ratio is None or not e.service_ms:
            entries.append(e)
            continue
        samples = np.asarray(e.service_ms, dtype=np.float64)
        rank = np.argsort(np.argsort(samples, kind="stable"), kind="stable")
        # each sample stands for the middle of its 1/n of the draws: the top one of 45 at the
        # 98.9th percentile, not the 100th, whose ratio is one stall's (the demo's static
        # ResNet-18: replayed p99 service 69 ms against 52 live, with the 100th)
        at = 100.0 * (rank + 0.5) / len(samples)
        scaled = e.model_copy(update={"service_ms": (samples * np.interp(at, QUANTILES, ratio))
                                      .tolist()})
        before, after = ((profile.core_ms(e), profile.core_ms(scaled)) if e.path_bound
                         else (float(np.mean(samples)), float(np.mean(scaled.service_ms))))
        slower = after / before if before > 0 else 1.0
        entries.append(scaled.model_copy(update={"throughput_rps": e.throughput_rps / slower}))
    return profile.model_copy(update={"entries": entries})
