"""A fast FCFS multi-server queue kernel (numba), the inner loop of the simulator and the planner.

One queue, `c` identical servers, requests served in arrival order by whichever server frees up
first. Service times are drawn by the caller beforehand, so the kernel is deterministic.

Drop, fall back or upgrade at dispatch by the live replica pool's own rule
(`gearshift.dispatch`): each request has a ladder of service times, most accurate first,
column `base` the variant in force, those before it its upgrades and those after it its
fallbacks, each with a `safe_s` and a `slack_s` (under the "hopeless" rule: its tail service
time plus the path's overhead, and its median service time; 0 under "expired"). A dropped
request is not served, and the server stays free and takes the next request at the same
instant. With one column this is the drop rule alone.

A `horizon_s` lets the caller run one period at a time: the kernel stops at the first request
whose dispatch (or drop) would happen at or after the horizon, without touching it or the
servers, so the caller can carry the queue and the server state into the next period. Because the
queue is FCFS, dispatch times are non-decreasing, so every request before that one is resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from gearshift.dispatch import choose_rung


@dataclass(frozen=True)
class KernelResult:
    """What happened to the first `n_done` requests; the rest were still queued at the horizon.

    `start_s[i]`: when request i was dispatched to a server, or dropped (seconds).
    `end_s[i]`: when its service ended (seconds); NaN if it was dropped.
    `served[i]`: False if it was dropped at dispatch. Entries at `i >= n_done` are undefined.
    `free_s`: each server's free time (seconds) after the last dispatched request.
    `choice[i]`: the ladder column that served request i, -1 if it was dropped.
    """

    start_s: np.ndarray
    end_s: np.ndarray
    served: np.ndarray
    free_s: np.ndarray
    n_done: int
    choice: np.ndarray


@numba.njit(cache=True, nogil=True)
def _fcfs(
    arrivals_s: np.ndarray,
    service_s: np.ndarray,
    deadlines_s: np.ndarray,
    use_deadlines: bool,
    safe_s: np.ndarray,
    slack_s: np.ndarray,
    overhead_s: float,
    path_s: np.ndarray,
    use_path: bool,
    free_s: np.ndarray,
    horizon_s: float,
    start_s: np.ndarray,
    end_s: np.ndarray,
    choice: np.ndarray,
    base: int,
    rate_rps: np.ndarray,
) -> int:
    """Fill start_s/end_s/choice in place and update free_s; return how many requests were
    resolved."""
    c = free_s.shape[0]
    n = arrivals_s.shape[0]
    safe_i = safe_s.copy()  # with the request's own path cost, if `use_path`
    slack_i = slack_s.copy()
    tail = 0  # the last request arrived before the dispatch (dispatch times never decrease)
    for i in range(n):
        k = 0
        earliest = free_s[0]
        for j in range(1, c):  # linear scan beats a heap for the c <= 64 we care about
            if free_s[j] < earliest:
                earliest = free_s[j]
                k = j
        a = arrivals_s[i]
        s = max(earliest, a)
        if s >= horizon_s:
            return i
        start_s[i] = s
        pick = 0
        if use_deadlines:
            tail = max(tail, i)
            while tail + 1 < n and arrivals_s[tail + 1] < s:
                tail += 1
            behind = tail - i
            first_left = deadlines_s[i + 1] - s if behind else math.inf
            path = 0.0
            if use_path:
                path = path_s[i]
                for m in range(safe_s.shape[0]):
                    safe_i[m] = safe_s[m] + path
                    slack_i[m] = slack_s[m] + path
            pick = choose_rung(s - a, deadlines_s[i] - s, safe_i if use_path else safe_s,
                               slack_i if use_path else slack_s, behind, first_left,
                               deadlines_s[tail] - s, c, overhead_s + path,
                               arrivals_s[tail] - a, base, rate_rps[i])
        choice[i] = pick
        if pick < 0:
            end_s[i] = math.nan
            continue
        e = s + service_s[i, pick]
        end_s[i] = e
        free_s[k] = e
    return len(arrivals_s)


def run_fcfs(
    arrivals_s: np.ndarray,
    service_s: np.ndarray,
    free_s: np.ndarray | int,
    deadlines_s: np.ndarray | None = None,
    horizon_s: float = math.inf,
    slack_s: np.ndarray | None = None,
    safe_s: np.ndarray | None = None,
    overhead_s: float = 0.0,
    path_s: np.ndarray | None = None,
    base: int = 0,
    rate_rps: np.ndarray | None = None,
) -> KernelResult:
    """Serve sorted `arrivals_s` (seconds) FCFS on `len(free_s)` servers.

    `service_s`: pre-drawn service times (seconds), one per request (1-d), or one row per
    request and one column per ladder entry (2-d: the variant in force, then its fallbacks).
    `free_s`: each server's free time (seconds), or an int `c` for `c` servers free from time 0.
    `deadlines_s`: absolute per-request deadlines (seconds) for drop or fallback at dispatch, or
    None to serve everything with column 0. `slack_s`: per column, the time a dispatch must
    leave before the deadline (default 0: only an expired request is dropped); `safe_s`: the
    same, tried first (default `slack_s`); `overhead_s`: the part of those times that does not
    occupy a server (the dispatch rule's view of the queue behind a request needs the rest).
    `path_s`: per request, the path's cost (seconds) the rule adds to those times and to
    `overhead_s` for it (a path-bound entry's cost at the request's offered rate); None: none.
    `base`: the column of the variant in force (the columns before it are upgrades);
    `rate_rps`: per request, the offered rate as it arrived (the upgrades' load check); None:
    0. `horizon_s`: stop before the first request that would be dispatched at or after it.
    The inputs are not modified.
    """
    arrivals = np.ascontiguousarray(arrivals_s, dtype=np.float64)
    service = np.asarray(service_s, dtype=np.float64)
    service = np.ascontiguousarray(service.reshape(len(service), -1) if service.ndim == 1
                                   else service)
    if service.shape[0] != arrivals.shape[0] or service.shape[1] < 1:
        raise ValueError(f"need service times for every arrival: {service.shape} vs "
                         f"{arrivals.shape}")
    slack = (np.zeros(service.shape[1]) if slack_s is None
             else np.ascontiguousarray(slack_s, dtype=np.float64))
    safe = slack if safe_s is None else np.ascontiguousarray(safe_s, dtype=np.float64)
    if slack.shape != (service.shape[1],) or safe.shape != slack.shape:
        raise ValueError("need one slack and one safe time per ladder column")
    free = _initial_free(free_s)
    use_deadlines = deadlines_s is not None
    deadlines = (
        np.ascontiguousarray(deadlines_s, dtype=np.float64) if use_deadlines else arrivals
    )
    if deadlines.shape != arrivals.shape:
        raise ValueError("need one deadline per arrival")
    start = np.empty_like(arrivals)
    end = np.empty_like(arrivals)
    choice = np.zeros(len(arrivals), dtype=np.int64)
    use_path = path_s is not None
    path = np.ascontiguousarray(path_s, dtype=np.float64) if use_path else arrivals
    if path.shape != arrivals.shape:
        raise ValueError("need one path cost per arrival")
    rates = (np.zeros(len(arrivals)) if rate_rps is None
             else np.ascontiguousarray(rate_rps, dtype=np.float64))
    if rates.shape != arrivals.shape:
        raise ValueError("need one offered rate per arrival")
    if not 0 <= base < service.shape[1]:
        raise ValueError(f"base column {base} is not one of the {service.shape[1]} columns")
    n_done = _fcfs(arrivals, service, deadlines, use_deadlines, safe, slack, float(overhead_s),
                   path, use_path, free, float(horizon_s), start, end, choice, int(base),
                   rates)
    served = np.zeros(len(arrivals), dtype=bool)
    served[:n_done] = ~np.isnan(end[:n_done])
    return KernelResult(start, end, served, free, int(n_done), choice)


def _initial_free(free_s: np.ndarray | int) -> np.ndarray:
    if isinstance(free_s, (int, np.integer)):
        if free_s < 1:
            raise ValueError(f"need at least one server, got {free_s}")
        return np.zeros(int(free_s), dtype=np.float64)
    free = np.array(free_s, dtype=np.float64)  # a copy: the kernel updates it in place
    if free.ndim != 1 or len(free) < 1:
        raise ValueError("free_s must be a non-empty 1-d array of server free times")
    return free


def warm_up() -> None:
    """Compile (or load from the on-disk cache) the kernel now rather than on first use."""
    one = np.zeros(1)
    run_fcfs(one, one, 1, one)
