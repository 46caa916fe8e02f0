"""The mixed-precision pool against the fp32 pool, live, on the same arrivals and deadline.

Runs the demo's experiment (`gearshift experiment`, every policy live on one arrival schedule,
calibrated through HTTP) on the fp32 ResNet pool, takes the arrival times it served, and runs
the same experiment on the mixed pool (`gearshift zoo build resnet-int8`) with exactly those
arrivals (`arrivals:FILE`) at the same deadline: the same absolute load, so what changes is
only the pool. Prints per policy the effective accuracy on each pool, the best static variant
of each, and the family's ceiling (its most accurate variant, every request on time). Then the
simulated comparison on many paths: `bench_switching.py` on each pool's calibrated profile,
both with the fp32 experiment's capacity, so every path has the same absolute rates.

Run by hand, nothing else running (about 20 minutes):
    .venv/bin/python benchmarks/bench_mixed_pool.py out/demo/zoo/resnet/pool.yaml \
        out/demo/zoo/resnet-int8/pool.yaml --out out/bench-mixed
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from gearshift.stopping import exit_on_sigterm, run_child
from gearshift.zoo.spec import load_pool_spec

HERE = Path(__file__).resolve().parent


def experiment(pool: Path, workload: str, seed: int, deadline_ms: float, duration_s: float,
               out: Path, cache: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "gearshift.cli", "experiment", str(pool), "--workload",
           workload, "--seed", str(seed), "--duration", f"{duration_s:g}", "--deadline-ms",
           f"{deadline_ms:g}", "--out", str(out), "--cache", str(cache), "--samples", "10",
           "--sweep-seconds", "400"]
    run_child(cmd, timeout_s=30 * 60)
    return dict(json.loads((out / "summary.json").read_text()))


def served_arrivals(records: Path) -> list[float]:
    """The schedule an experiment's policy was sent (every request, answered or not)."""
    with records.open() as f:
        return sorted(float(r["scheduled_s"]) for r in csv.DictReader(f))


def effective(summary: dict[str, object]) -> dict[str, float]:
    policies = summary["policies"]
    assert isinstance(policies, dict)
    return {k: float(v["effective_accuracy"]) for k, v in policies.items()}


def simulated(exp: Path, capacity_from: Path, out: Path, traces: Path) -> dict[str, object]:
    """bench_switching on `exp`'s profile at `capacity_from`'s capacity; its JSON."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(exp / "profile.json", out / "profile.json")
    shutil.copy(capacity_from / "summary.json", out / "summary.json")
    cmd = [sys.executable, str(HERE / "bench_switching.py"), str(out), "--json",
           str(out / "switching.json"), "--traces", str(traces)]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    (out / "switching.txt").write_text(text)
    return dict(json.loads((out / "switching.json").read_text()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32", type=Path, help="the fp32 pool.yaml")
    ap.add_argument("mixed", type=Path, help="the mixed pool.yaml")
    ap.add_argument("--workload", default="mmpp:dwell=5")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--deadline-ms", type=float, default=300.0)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--out", type=Path, default=Path("out/bench-mixed"))
    ap.add_argument("--traces", type=Path, default=HERE.parents[1] / "shared" / "traces")
    a = ap.parse_args()
    exit_on_sigterm()  # stopped, it stops the experiment it runs, and that its server
    cache = a.out / "cache"
    first = experiment(a.fp32, a.workload, a.seed, a.deadline_ms, a.duration, a.out / "fp32",
                       cache)
    schedule = a.out / "arrivals.txt"
    schedule.write_text("".join(f"{t:.6f}\n" for t in served_arrivals(
        a.out / "fp32" / "records" / "table.csv")))
    second = experiment(a.mixed, f"arrivals:{schedule}", a.seed, a.deadline_ms, a.duration,
                        a.out / "mixed", cache)
    ea = {"fp32": effective(first), "mixed": effective(second)}
    spec = load_pool_spec(a.fp32)
    ceiling = max(spec.accuracy_of(n) for n in spec.variant_names())
    print(f"live, {a.workload} seed {a.seed}, {a.duration:g} s, {a.deadline_ms:g} ms; "
          f"family ceiling {ceiling:.4f}")
    print("| policy | fp32 pool | mixed pool |")
    print("|---|---|---|")
    for name in ("table", "queue-aware", "oracle"):
        print(f"| {name} | {ea['fp32'].get(name, float('nan')):.3f} | "
              f"{ea['mixed'].get(name, float('nan')):.3f} |")
    for pool, figures in ea.items():
        statics = {k: v for k, v in figures.items() if k.startswith("static:")}
        best = max(statics, key=lambda k: statics[k])
        print(f"best static of the {pool} pool: {best} {statics[best]:.3f}")
    runs = {pool: simulated(a.out / pool, a.out / "fp32", a.out / f"sim-{pool}", a.traces)
            for pool in ("fp32", "mixed")}
    print("simulated, same absolute paths (16 seeds per shape), mean effective accuracy:")
    print("| deadline ms | shape | fp32 table | mixed table | mixed - fp32 (worst path) |")
    print("|---|---|---|---|---|")
    for deadline, shapes in runs["fp32"].items():
        assert isinstance(shapes, dict)
        for shape, figures in shapes.items():
            f32 = figures["table"]
            mix = runs["mixed"][deadline][shape]["table"]  # type: ignore[index]
            diff = [m - f for m, f in zip(mix, f32, strict=True)]
            print(f"| {deadline} | {shape} | {sum(f32) / len(f32):.3f} | "
                  f"{sum(mix) / len(mix):.3f} | {sum(diff) / len(diff):+.3f} "
                  f"({min(diff):+.3f}) |")


if __name__ == "__main__":
    main()
