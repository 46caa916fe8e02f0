"""Switching at cluster scale, on paper and in simulation: N nodes of C cores (a profiled node
scaled up, `sim.cluster.node_profile`), a real trace from the shared traces scaled to the
cluster's capacity, one controller for all nodes (as `gearshift.ray` runs it); the effective
accuracy of `table` and `queue-aware` against every static variant deployed on every node, and
the controller's cost per period as the number of nodes grows.

    .venv/bin/python benchmarks/bench_cluster.py out/demo/resnet --nodes 8,64 --cores 16

Takes an experiment's folder (its calibrated `profile.json` and `summary.json`: the node's
capacity is the experiment's, scaled by cores). Prints one table row per node count and
policy, then the controller's time per period at several node counts.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gearshift.cluster import ClusterControl, NodeReport
from gearshift.control.factory import make_policy
from gearshift.experiment.shapes import shapes
from gearshift.loadgen.workload import parse_workload
from gearshift.planning.planner import plan_table
from gearshift.planning.settings import PlanSettings
from gearshift.policy import QUEUE_AWARE, TABLE, Controller, static_name
from gearshift.profiling.profile import load_profile
from gearshift.sim.cluster import node_profile, simulate_cluster
from gearshift.sim.simulator import SimSettings
from gearshift.types import Decision

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def controller_cost_ms(policy_factory, initial: Decision, nodes: int, periods: int = 200
                       ) -> float:  # type: ignore[no-untyped-def]
    """Mean wall time of one period's step with `nodes` nodes reporting (aggregation and the
    policy's decision), in ms."""
    now = [0.0]
    control = ClusterControl(Controller(policy_factory(), keep_log=False), initial, 0.5,
                             clock=lambda: now[0])
    rng = np.random.default_rng(0)
    spent = 0.0
    for k in range(periods):
        now[0] = 0.5 * (k + 1)
        for n in range(nodes):
            a = int(rng.poisson(50))
            control.report(NodeReport(str(n), 0.5, a, (a // 4,) * 4, 2, 1, a, 0, 40.0,
                                      control.decision))
        t0 = time.perf_counter()
        control.tick()
        spent += time.perf_counter() - t0
    return spent / periods * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path, help="an experiment's --out folder")
    ap.add_argument("--nodes", default="8,64", help="node counts, commas")
    ap.add_argument("--cores", type=int, default=16, help="cores per node")
    ap.add_argument("--deadline", type=float, default=300.0, help="ms")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of trace")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--period", type=float, default=0.5, help="control period, s")
    ap.add_argument("--traces", type=Path, default=TRACES, help="folder of the shared traces")
    ap.add_argument("--routing", choices=("round-robin", "random"), default="round-robin",
                    help="how requests are spread over the nodes")
    ap.add_argument("--json", type=Path, help="write the figures here")
    a = ap.parse_args()
    base = load_profile(a.experiment / "profile.json")
    summary = json.loads((a.experiment / "summary.json").read_text())
    node = node_profile(base, a.cores)
    node_capacity = summary["notes"]["workload_capacity_rps"] * a.cores / base.cores
    t0 = time.perf_counter()
    plan = PlanSettings(period_s=a.period)
    table = plan_table(node, a.deadline, plan, True, 0)
    how = base.calibration or "in-process"
    print(f"a node of {a.cores} cores from a {base.cores}-core profile ({how}): capacity {node_capacity:.0f} req/s; table planned in "
          f"{time.perf_counter() - t0:.1f} s; deadline {a.deadline:g} ms, {a.duration:g} s of "
          f"the Twitter trace per run, period {a.period:g} s, {a.routing} routing")
    family = shapes(a.traces, a.duration)
    if "trace" not in family:
        raise SystemExit(f"no trace under {a.traces}")
    variants = node.variants()
    names = [*(static_name(v) for v in variants), TABLE, QUEUE_AWARE]
    figures: dict[str, dict[str, float]] = {}
    print("| nodes | requests | " + " | ".join(names) + " | table - best static | "
          "queue-aware - best static | simulated in |")
    print("|---" * (len(names) + 5) + "|")
    for n in (int(x) for x in a.nodes.split(",")):
        arrivals = parse_workload(family["trace"](a.seed)).arrivals(
            a.duration, a.seed, node_capacity * n)
        t1 = time.perf_counter()
        ea = {}
        for name in names:
            policy, initial = make_policy(name, table, node, variants)
            res = simulate_cluster(node, Controller(policy, keep_log=False), arrivals,
                                   a.deadline, initial, a.seed, n,
                                   SimSettings(period_s=a.period, duration_s=a.duration),
                                   a.routing)
            ea[name] = res.effective_accuracy(node.accuracy)
        best = max(ea[s] for s in names if s.startswith("static:"))
        figures[str(n)] = ea
        print(f"| {n} | {len(arrivals)} | " + " | ".join(f"{ea[s]:.3f}" for s in names)
              + f" | {ea[TABLE] - best:+.3f} | {ea[QUEUE_AWARE] - best:+.3f} | "
              f"{time.perf_counter() - t1:.0f} s |")
    print("controller time per period (aggregation and decision), table policy:")
    for n in (8, 64, 512):
        cost = controller_cost_ms(lambda: make_policy(TABLE, table, node, variants)[0],
                                  make_policy(TABLE, table, node, variants)[1], n)
        figures.setdefault("controller_ms", {})[str(n)] = cost
        print(f"  {n} nodes: {cost:.2f} ms")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
