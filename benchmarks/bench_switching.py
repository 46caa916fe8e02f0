"""Is switching on or above every static variant on load paths it has never seen?

Takes an experiment's folder (its calibrated `profile.json` and `summary.json`), draws many
load paths of several shapes (`gearshift.experiment.shapes`: Markov with short and long dwell,
steps, a flash crowd, a real trace), and simulates every policy on each at every deadline, each
deadline with its own tables (planned once, as the experiment plans them). Per shape and
deadline it prints the best static variant on the mean, and for each switching policy its mean
margin over that variant and its worst margin over a path's own best static variant; for
`queue-aware` also its worst margin over `table` on the same path. The last lines name the
worst margins overall and the mean margins at the experiment's deadline, over the best static
on the mean and over each path's own best static (with `--oracle`, the hindsight oracle's too:
how much any controller could gain on these paths). `--json` keeps every
path's figures. `--slowdown 1.2` serves every path with service times 1.2 x the profile's while
tables and policies still know the profile as measured: a profile that flatters the server, as
a live one does when the machine is busier than at calibration. `--late-start 1` begins each
path's load at an offset drawn in [0, 1) s after the controller's first period (the path shifted,
what falls past its end dropped), as a live run's does: its load generator starts after the
server's control loop, so the first requests land part of the way into a period after idle ones.

    .venv/bin/python benchmarks/bench_switching.py out/demo/resnet --seeds 16 \
        --deadlines 75,150,225,300,450,600,900
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.control.factory import SWITCHING
from gearshift.experiment import offline
from gearshift.experiment.shapes import shapes
from gearshift.loadgen.workload import parse_workload
from gearshift.planning.settings import PlanSettings
from gearshift.policy import ORACLE, PAPER, QUEUE_AWARE, TABLE, static_name
from gearshift.profiling.profile import Profile, load_profile

POLICIES = (TABLE, QUEUE_AWARE, PAPER)
TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


@dataclass(frozen=True)
class Job:
    profile: Profile
    capacity_rps: float
    shapes: tuple[str, ...]
    seeds: tuple[int, ...]
    duration_s: float
    period_s: float
    oracle: bool
    trace_dir: Path
    slowdown: float = 1.0
    late_start_s: float = 0.0


def run_deadline(job: Job, deadline_ms: float) -> dict[str, dict[str, list[float]]]:
    """{shape: {policy: [effective accuracy per seed]}} at one deadline, every shape served
    with the same tables (planned once, seed 0)."""
    plan = PlanSettings(period_s=job.period_s)
    tables = offline.sweep_tables(job.profile, deadline_ms, plan, 0)
    variants = job.profile.variants()
    names = [*(static_name(v) for v in variants), *POLICIES,
             *([ORACLE] if job.oracle else [])]
    family = shapes(job.trace_dir, job.duration_s)
    out: dict[str, dict[str, list[float]]] = {}
    for shape in job.shapes:
        paths = tuple(late(parse_workload(family[shape](seed)).arrivals(
                          job.duration_s, seed, job.capacity_rps), seed, job.late_start_s,
                          job.duration_s)
                      for seed in job.seeds)
        sweep = offline.SweepJob(job.profile, variants, paths, job.seeds, job.period_s,
                                 job.duration_s, plan,
                                 served_by=slowed(job.profile, job.slowdown))
        out[shape] = offline.path_accuracies(sweep, deadline_ms, tables, names)
    return out


def late(arrivals_s: np.ndarray, seed: int, most_s: float, duration_s: float) -> np.ndarray:
    """`arrivals_s` shifted by an offset drawn in [0, `most_s`) with `seed`, those past
    `duration_s` dropped (unchanged for 0)."""
    if most_s <= 0.0:
        return arrivals_s
    shifted = arrivals_s + np.random.default_rng(seed).uniform(0.0, most_s)
    return np.asarray(shifted[shifted < duration_s])


def slowed(profile: Profile, factor: float) -> Profile | None:
    """`profile` with every service time `factor` x longer (None for 1)."""
    if factor == 1.0:
        return None
    entries = [e.model_copy(update={"service_ms": [x * factor for x in e.service_ms],
                                    "throughput_rps": e.throughput_rps / factor})
               for e in profile.entries]
    return profile.model_copy(update={"entries": entries})


@dataclass(frozen=True)
class Margins:
    """A policy against the static variants on one shape and deadline. `mean`: over the best
    static on the mean (the one a user would deploy); `per_path_mean` and `worst`: the mean and
    the least of its margins over each path's own best static (hindsight per path)."""

    mean: float
    per_path_mean: float
    worst: float
    best: str


def margins(ea: dict[str, list[float]], policy: str) -> Margins:
    statics = [n for n in ea if n.startswith("static:")]
    best = max(statics, key=lambda n: float(np.mean(ea[n])))
    per_path = np.max([ea[n] for n in statics], axis=0)
    mine = np.asarray(ea[policy])
    return Margins(float(mine.mean() - np.mean(ea[best])), float(np.mean(mine - per_path)),
                   float(np.min(mine - per_path)), best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path, help="an experiment's --out folder")
    ap.add_argument("--shapes", default="", help="commas; default: every shape available")
    ap.add_argument("--duration", type=float, default=40.0, help="seconds per path")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--period", type=float, default=0.5, help="control period, s")
    ap.add_argument("--deadlines", default="75,150,225,300,450,600,900", help="ms, commas")
    ap.add_argument("--oracle", action="store_true", help="also the hindsight oracle (slow)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every path's figures here")
    ap.add_argument("--traces", type=Path, default=TRACES, help="folder of the shared traces")
    ap.add_argument("--slowdown", type=float, default=1.0,
                    help="serve with service times this many times the profile's")
    ap.add_argument("--late-start", type=float, default=0.0,
                    help="begin each path's load up to this many seconds late, as live")
    a = ap.parse_args()
    profile = load_profile(a.experiment / "profile.json")
    summary = json.loads((a.experiment / "summary.json").read_text())
    capacity = summary["notes"]["workload_capacity_rps"]
    available = shapes(a.traces, a.duration)
    chosen = tuple(a.shapes.split(",")) if a.shapes else tuple(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        raise SystemExit(f"unknown or unavailable shapes {unknown}; have {list(available)}")
    deadlines = [float(x) for x in a.deadlines.split(",")]
    job = Job(profile, capacity, chosen, tuple(range(a.first_seed, a.first_seed + a.seeds)),
              a.duration, a.period, a.oracle, a.traces, a.slowdown, a.late_start)
    print(f"{a.seeds} paths per shape from seed {a.first_seed}, {a.duration:g} s each, load "
          f"scaled to {capacity:g} req/s; profile: {profile.calibration or 'in-process'}"
          + (f"; served {a.slowdown:g} x slower than profiled" if a.slowdown != 1.0 else "")
          + (f"; the load begins up to {a.late_start:g} s late" if a.late_start else ""))
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        results = dict(zip(deadlines, ex.map(run_deadline, [job] * len(deadlines), deadlines),
                           strict=True))
    shown = (*POLICIES, *([ORACLE] if a.oracle else []))
    print("| shape | deadline ms | best static (mean) | " + " | ".join(
        f"{n}: mean / worst" for n in shown) + " | queue-aware - table: mean / worst |")
    print("|---" * (4 + len(shown)) + "|")
    worst = {n: (np.inf, "") for n in SWITCHING}
    for shape in chosen:
        for d in deadlines:
            ea = results[d][shape]
            cells = []
            for n in shown:
                m = margins(ea, n)
                best = m.best
                cells.append(f"{m.mean:+.3f} / {m.worst:+.3f}")
                if n in worst and m.worst < worst[n][0]:
                    worst[n] = (m.worst, f"{shape} at {d:g} ms")
            gap = np.asarray(ea["queue-aware"]) - np.asarray(ea["table"])
            print(f"| {shape} | {d:g} | {best} {np.mean(ea[best]):.3f} | " + " | ".join(cells)
                  + f" | {gap.mean():+.3f} / {gap.min():+.3f} |")
    for n, (low, where) in worst.items():
        print(f"worst margin of {n} over a path's best static variant: {low:+.3f} ({where})")
    at = float(summary["deadline_ms"])
    if at in results:
        for n in shown:
            got = {s: margins(results[at][s], n) for s in chosen}
            print(f"mean margin of {n} at {at:g} ms, over the best static on the mean / over "
                  "each path's own best static: " + ", ".join(
                      f"{s} {m.mean:+.3f} / {m.per_path_mean:+.3f}" for s, m in got.items()))
    if a.json:
        a.json.write_text(json.dumps({str(d): r for d, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
