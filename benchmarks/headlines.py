"""One line per benchmark, each with its figure and its target: what `make bench` prints after
the peers' table. Each runs a small case of its benchmark (the full runs and their tables are
the scripts themselves, by hand; BENCHMARKS.md has both).

    .venv/bin/python benchmarks/headlines.py [--pool ZOO/resnet/pool.yaml]
        [--experiment out/demo/resnet]

`--pool`: a ResNet pool (`gearshift zoo build resnet`) for the pool/raw ratio; `--experiment`:
an experiment's folder (`make demo` writes out/demo/resnet) for switching over seeds and at
cluster scale. A line whose input is missing says so instead of a figure. Run nothing else
beside it: the pool and load-generator lines are timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def simulator() -> str:
    from bench_sim import bench_servers

    from gearshift.sim.kernel import warm_up

    warm_up()
    kernel, fixed, looped = bench_servers(1, 1_000_000, seed=1)
    return (f"simulator: {fixed / 1e6:.2f} M simulated requests/s, fixed allocation, one core "
            f"(target >= 1 M); kernel alone {kernel / 1e6:.1f} M, control loop "
            f"{looped / 1e6:.2f} M  [bench_sim.py]")


def planner() -> str:
    from bench_planner import resnet_like_profile

    from gearshift.planning.planner import plan
    from gearshift.planning.settings import PlanSettings
    from gearshift.sim.kernel import warm_up

    warm_up()
    profile = resnet_like_profile()
    t0 = time.perf_counter()
    table = plan(profile, 250.0, None, PlanSettings(duration_s=60.0))
    seconds = time.perf_counter() - t0
    loads = len({p.rate_rps for p in table.grid})
    return (f"planner: {seconds:.1f} s for {len(profile.entries)} candidates x {loads} loads "
            f"(target < 10 s)  [bench_planner.py]")


def pool(pool_yaml: Path | None) -> str:
    if pool_yaml is None or not pool_yaml.is_file():
        return f"pool/raw: no ResNet pool at {pool_yaml} (gearshift zoo build resnet)"
    from bench_pool import pool_throughput, raw_throughput

    from gearshift.types import Allocation
    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(pool_yaml)
    alloc = Allocation(2, 1)
    raws, pools = [], []
    for _ in range(2):  # interleaved: drift hits both
        raws.append(raw_throughput(spec, "resnet18", alloc, 5.0, False))
        pools.append(asyncio.run(pool_throughput(spec, "resnet18", alloc, 5.0, False))[0])
    raw, served = float(np.mean(raws)), float(np.mean(pools))
    return (f"pool/raw: {served / raw:.3f} for ResNet-18 at 2x1 ({served:.1f} / {raw:.1f} "
            f"req/s; target >= 0.95)  [bench_pool.py]")


def load_generator() -> str:
    from bench_loadgen import measure, server_args

    from gearshift.experiment.live import free_port, live_server
    from gearshift.loadgen.payloads import random_payloads
    from gearshift.loadgen.workload import parse_workload
    from gearshift.zoo.spec import load_pool_spec

    with tempfile.TemporaryDirectory() as tmp, \
            live_server(server_args(Path(tmp), free_port()), 60.0) as url:
        spec = load_pool_spec(Path(tmp) / "pool.yaml")
        payloads = random_payloads(spec, 64, seed=0, deadline_ms=1000.0)
        arrivals = parse_workload("poisson:500").arrivals(5.0, seed=0)
        m = measure("gearshift", "uvloop", url, arrivals, payloads)
    return (f"load generator: send lag p99 {m['lag'].p99_ms:.2f} ms at 500 req/s of Poisson "
            f"arrivals, server on the same 2 cores (target < 5 ms)  [bench_loadgen.py]")


def switching(experiment: Path | None, traces: Path) -> str:
    if experiment is None or not (experiment / "profile.json").is_file():
        return f"switching over seeds: no experiment at {experiment} (make demo writes one)"
    from bench_switching import Job, margins, run_deadline

    from gearshift.experiment.shapes import shapes
    from gearshift.profiling.profile import load_profile

    summary = json.loads((experiment / "summary.json").read_text())
    chosen = tuple(shapes(traces, 40.0))
    job = Job(load_profile(experiment / "profile.json"),
              summary["notes"]["workload_capacity_rps"], chosen, tuple(range(100, 104)), 40.0,
              0.5, False, traces)
    result = run_deadline(job, 300.0)
    low = min(margins(result[s], "table").worst for s in chosen)
    mean = float(np.mean([margins(result[s], "table").mean for s in chosen]))
    return (f"switching over seeds: `table` over the best static at 300 ms, mean {mean:+.3f}, "
            f"worst path {low:+.3f} ({len(chosen)} shapes x 4 seeds x 40 s, simulated; targets "
            f"mean >= +0.02 on moving load, worst >= -0.002)  [bench_switching.py]")


def cluster(experiment: Path | None, traces: Path) -> str:
    if experiment is None or not (experiment / "profile.json").is_file():
        return f"cluster: no experiment at {experiment} (make demo writes one)"
    from gearshift.control.factory import make_policy
    from gearshift.experiment.shapes import shapes
    from gearshift.loadgen.workload import parse_workload
    from gearshift.planning.planner import plan_table
    from gearshift.planning.settings import PlanSettings
    from gearshift.policy import TABLE, Controller, static_name
    from gearshift.profiling.profile import load_profile
    from gearshift.sim.cluster import node_profile, simulate_cluster
    from gearshift.sim.simulator import SimSettings

    base = load_profile(experiment / "profile.json")
    summary = json.loads((experiment / "summary.json").read_text())
    node = node_profile(base, 16)
    capacity = summary["notes"]["workload_capacity_rps"] * 16 / base.cores
    table = plan_table(node, 300.0, PlanSettings(period_s=0.5), True, 0)
    family = shapes(traces, 60.0)
    if "trace" not in family:
        return f"cluster: no trace under {traces}"
    arrivals = parse_workload(family["trace"](1)).arrivals(60.0, 1, capacity * 8)
    ea = {}
    for name in [*(static_name(v) for v in node.variants()), TABLE]:
        policy, initial = make_policy(name, table, node, node.variants())
        ea[name] = simulate_cluster(node, Controller(policy, keep_log=False), arrivals, 300.0,
                                    initial, 1, 8, SimSettings(period_s=0.5, duration_s=60.0)
                                    ).effective_accuracy(node.accuracy)
    best = max(v for k, v in ea.items() if k != TABLE)
    return (f"cluster: `table` {ea[TABLE]:.3f} against the best static {best:.3f} "
            f"({ea[TABLE] - best:+.3f}) on 8 simulated nodes of 16 cores, 60 s of the Twitter "
            f"trace at 300 ms  [bench_cluster.py]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, help="a ResNet pool.yaml, for pool/raw")
    ap.add_argument("--experiment", type=Path, help="an experiment's folder")
    ap.add_argument("--traces", type=Path, default=TRACES)
    a = ap.parse_args()
    lines: list[tuple[str, Callable[[], str]]] = [
        ("simulator", simulator), ("planner", planner), ("pool", lambda: pool(a.pool)),
        ("load generator", load_generator),
        ("switching", lambda: switching(a.experiment, a.traces)),
        ("cluster", lambda: cluster(a.experiment, a.traces)),
    ]
    for name, line in lines:
        t0 = time.perf_counter()
        try:
            text = line()
        except Exception as exc:  # noqa: BLE001 - one benchmark failing must not hide the others
            text = f"{name}: failed: {type(exc).__name__}: {exc}"
        print(f"{text} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
