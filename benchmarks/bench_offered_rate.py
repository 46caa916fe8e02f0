"""What reading the offered rate costs the pool per request (`engine.offered_rate`), against
the walk back over the last second's enqueue times it replaced.

Run by hand (seconds, one core):
    .venv/bin/python benchmarks/bench_offered_rate.py [--requests 200000]
Poisson enqueues at each rate; per request, as `ReplicaPool.infer` does: record the time, then
read the upgrades' rate at it. Best of 3 runs, microseconds per request.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from gearshift.dispatch import RATE_WINDOW_S, UPGRADE_WINDOW_S
from gearshift.engine.offered_rate import OfferedRate


def two_windows(times: list[float]) -> None:
    rate = OfferedRate()
    for t in times:
        rate.record(t)
        rate.for_upgrades(t)


def walk_back(times: list[float]) -> None:
    """One window of the last second; the last quarter second counted by walking back."""
    arrivals: deque[float] = deque()
    for t in times:
        arrivals.append(t)
        while arrivals and arrivals[0] <= t - RATE_WINDOW_S:
            arrivals.popleft()
        recent = 0
        for x in reversed(arrivals):
            if x <= t - UPGRADE_WINDOW_S:
                break
            recent += 1
        max(len(arrivals) / RATE_WINDOW_S, recent / UPGRADE_WINDOW_S)


def best_us(fn: Callable[[list[float]], None], times: list[float]) -> float:
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn(times)
        runs.append(time.perf_counter() - t0)
    return min(runs) / len(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    a = ap.parse_args()
    print("| offered rate, req/s | two windows, us/request | walk back, us/request | ratio |")
    print("|---|---|---|---|")
    for rate_rps in (50, 500, 1300, 3000):
        gaps = np.random.default_rng(0).exponential(1.0 / rate_rps, a.requests)
        times = np.cumsum(gaps).tolist()
        ours, walk = best_us(two_windows, times), best_us(walk_back, times)
        print(f"| {rate_rps} | {ours:.2f} | {walk:.2f} | {walk / ours:.1f} |")


if __name__ == "__main__":
    main()
