"""Simulator speed in simulated requests per second of wall time (target >= 1,000,000 for a fixed
allocation on one core).

Run by hand (seconds, one core):
    .venv/bin/python benchmarks/bench_sim.py [--requests 2000000]
For c = 1, 2, 4, 16 servers at utilisation 0.9 with drop-at-dispatch deadlines it times
  kernel:          `run_fcfs` alone on pre-drawn service times;
  simulate_fixed:  the planner's path (sampling service and overhead from a profile, columns);
  simulate:        the controller loop with a static policy, one kernel call per 1 s period.
The kernel is compiled (or loaded from its cache) before timing; best of 3 runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from gearshift.control.policies import StaticPolicy
from gearshift.policy import Controller
from gearshift.profiling.profile import MachineInfo, Profile
from gearshift.sim.kernel import run_fcfs, warm_up
from gearshift.sim.simulator import simulate, simulate_fixed
from gearshift.types import Allocation, Decision

SERVICE_MS = 10.0
DEADLINE_MS = 100.0


def profile_for(c: int) -> Profile:
    samples = np.random.default_rng(0).exponential(SERVICE_MS, 5000)
    return Profile(
        application="bench", pool_digest="bench", cores=c,
        machine=MachineInfo(cpu_model="-", cores=c, platform="-", python="-", onnxruntime="-"),
        created="2026-01-01T00:00:00", overhead_ms=[0.5, 1.0, 1.5], accuracy={"m": 0.7},
        entries=[{"variant": "m", "replicas": c, "threads": 1, "service_ms": samples.tolist(),
                  "throughput_rps": c * 1000.0 / SERVICE_MS}],
    )


def best_rate(n: int, run: Callable[[], object], repeats: int = 3) -> float:
    """Requests per wall-clock second, best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2_000_000)
    args = ap.parse_args()
    warm_up()
    print(f"{'c':>3} {'kernel':>14} {'simulate_fixed':>16} {'simulate':>14}   (requests/s)")
    for c in (1, 2, 4, 16):
        kernel, fixed, looped = bench_servers(c, args.requests, seed=c)
        print(f"{c:>3} {kernel:>14,.0f} {fixed:>16,.0f} {looped:>14,.0f}")


def bench_servers(c: int, n: int, seed: int) -> tuple[float, float, float]:
    """(kernel, simulate_fixed, simulate) requests/s for c servers at utilisation 0.9."""
    rng = np.random.default_rng(seed)
    rate = 0.9 * c * 1000.0 / SERVICE_MS
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    service = rng.exponential(SERVICE_MS / 1000.0, n)
    deadlines = arrivals + DEADLINE_MS / 1000.0
    profile = profile_for(c)
    decision = Decision("m", Allocation(c, 1))
    kernel = best_rate(n, lambda: run_fcfs(arrivals, service, c, deadlines))
    fixed = best_rate(n, lambda: simulate_fixed(
        profile, "m", decision.allocation, arrivals, DEADLINE_MS, seed=0))
    looped = best_rate(n, lambda: simulate(
        profile, Controller(StaticPolicy(decision)), arrivals, DEADLINE_MS, decision, seed=0),
        repeats=1)
    return kernel, fixed, looped


if __name__ == "__main__":
    main()
