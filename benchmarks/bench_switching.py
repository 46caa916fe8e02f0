"""Does switching beat every static variant beyond the one load path of the demo?

Takes an experiment's folder (its calibrated `profile.json` and `summary.json`), draws the same
workload for many seeds, and simulates every policy at several deadlines, each with a table
planned for that deadline. Prints, per deadline, the mean effective accuracy of each switching
policy and the oracle; its margin over the best static variant (best on the mean); on how many
seeds it was on or above that seed's best static variant; and its worst margin over a seed's
best static variant.

    .venv/bin/python benchmarks/bench_switching.py out/demo/resnet --seeds 16 \
        --deadlines 75,150,225,300,450,600,900
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gearshift.experiment import offline
from gearshift.loadgen.workload import parse_workload
from gearshift.profiling.profile import load_profile

SWITCHING = ("table", "queue-aware", offline.PAPER, offline.ORACLE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path, help="an experiment's --out folder")
    ap.add_argument("--workload", default="mmpp:dwell=5")
    ap.add_argument("--duration", type=float, default=40.0, help="seconds per run")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--period", type=float, default=0.5, help="control period, s")
    ap.add_argument("--paper-plan", action="store_true",
                    help="plan table and queue-aware as the paper (default: assuming their "
                         "fallbacks, as the experiment does); they are served with fallbacks")
    ap.add_argument("--deadlines", default="75,150,225,300,450,600,900", help="ms, commas")
    a = ap.parse_args()
    profile = load_profile(a.experiment / "profile.json")
    capacity = json.loads((a.experiment / "summary.json").read_text())["notes"][
        "workload_capacity_rps"]
    variants = profile.variants()
    statics = [f"static:{v}" for v in variants]
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    print(f"{a.workload}, {a.duration:g} s, {a.seeds} seeds from {a.first_seed}, load scaled to "
          f"{capacity:g} req/s; profile: {profile.calibration or 'in-process'}")
    print("| deadline ms | best static (mean) | " + " | ".join(SWITCHING) + " |")
    print("|---" * (2 + len(SWITCHING)) + "|")
    for deadline in (float(x) for x in a.deadlines.split(",")):
        tables = {True: offline.plan_table(profile, deadline, 0, not a.paper_plan),
                  False: offline.plan_table(profile, deadline, 0, fallbacks=False)}
        ea: dict[str, list[float]] = {n: [] for n in (*statics, *SWITCHING)}
        for seed in seeds:
            arrivals = parse_workload(a.workload).arrivals(a.duration, seed, capacity)
            for name, values in ea.items():
                table = tables[name != offline.PAPER]
                run = offline.simulate_policy(name, profile, table, variants, arrivals, deadline,
                                              seed, a.period, a.duration)
                values.append(run.columns.effective_accuracy(profile.accuracy))
        best = max(statics, key=lambda n: np.mean(ea[n]))
        per_seed_best = np.max([ea[n] for n in statics], axis=0)
        cells = [f"{np.mean(ea[n]):.3f} ({np.mean(ea[n]) - np.mean(ea[best]):+.3f}; "
                 f"{int(np.sum(np.array(ea[n]) >= per_seed_best))}/{a.seeds}, worst "
                 f"{np.min(np.array(ea[n]) - per_seed_best):+.3f})" for n in SWITCHING]
        print(f"| {deadline:g} | {best} {np.mean(ea[best]):.3f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
