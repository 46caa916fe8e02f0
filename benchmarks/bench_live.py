"""Switching against every static variant live, on load paths other than the demo's.

Runs `gearshift experiment` (its own server on 127.0.0.1, calibrated through HTTP, every policy
live on the same arrival schedule) once per (shape, seed), with the shapes of
`gearshift.experiment.shapes` (rates per capacity, so each is scaled to what this server
answers), and prints per run the live effective accuracy of `table` and `queue-aware`, the best
static variant and their margins over it. Each run takes about (calibration ~40 s) + 7 x
(duration + 1 s) x rounds + the sweep; nothing else should run beside it. With `--rounds 2`
every policy runs twice on the schedule, the second time in the reverse order, and the figures
are each policy's mean over the rounds, with the margins of each round after them (a host
whose speed drifts over the minutes of a run then weighs on every policy alike).

    .venv/bin/python benchmarks/bench_live.py out/demo/zoo/resnet/pool.yaml \
        --runs flash:7:300,trace:3:450,mmpp-20:11:200,steps:5:600 --duration 30 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gearshift.experiment.shapes import shapes
from gearshift.stopping import exit_on_sigterm, run_child

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"


def run_one(pool: Path, spec: str, seed: int, duration_s: float, deadline_ms: float,
            out: Path, cache: Path, rounds: int) -> dict[str, Any]:
    """One experiment; its summary.json."""
    cmd = [sys.executable, "-m", "gearshift.cli", "experiment", str(pool), "--workload", spec,
           "--seed", str(seed), "--duration", f"{duration_s:g}", "--deadline-ms",
           f"{deadline_ms:g}", "--out", str(out), "--cache", str(cache), "--samples", "10",
           "--sweep-seconds", f"{duration_s:g}", "--rounds", str(rounds)]
    run_child(cmd, timeout_s=30 * 60)
    return json.loads((out / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pool", type=Path, help="pool.yaml")
    ap.add_argument("--runs", default="flash:7:300,trace:3:450,mmpp-20:11:200,steps:5:600",
                    help="shape:seed:deadline_ms triples, commas")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load per policy")
    ap.add_argument("--out", type=Path, default=Path("out/bench-live"))
    ap.add_argument("--traces", type=Path, default=TRACES, help="folder of the shared traces")
    ap.add_argument("--rounds", type=int, default=1,
                    help="live runs of every policy per path, in alternating order")
    a = ap.parse_args()
    exit_on_sigterm()  # stopped, it stops the experiment it runs, and that its server
    family = shapes(a.traces, a.duration)
    missing = [r for r in a.runs.split(",") if r.split(":")[0] not in family]
    if missing:
        raise SystemExit(f"unknown or unavailable shapes in {missing}; have {list(family)}")
    per_round = " | table - best, each round | queue-aware - best, each round" * (a.rounds > 1)
    print("| shape | seed | deadline ms | workload | requests | table | queue-aware | "
          f"best static | table - best | queue-aware - best{per_round} |")
    print("|---" * (10 + 2 * (a.rounds > 1)) + "|")
    rows = []
    for item in a.runs.split(","):
        shape, seed_text, deadline_text = item.split(":")
        seed, deadline_ms = int(seed_text), float(deadline_text)
        spec = family[shape](seed)
        started = time.perf_counter()
        summary = run_one(a.pool, spec, seed, a.duration, deadline_ms,
                          a.out / f"{shape}-{seed}-{deadline_ms:g}", a.out / "cache", a.rounds)
        policies = summary["policies"]
        rounds = summary.get("rounds")
        ea = ({n: p["effective_accuracy"] for n, p in policies.items() if n != "oracle"}
              if rounds is None else dict(rounds["mean_effective_accuracy"]))
        best = max((n for n in ea if n.startswith("static:")), key=lambda n: ea[n])
        rows.append({"shape": shape, "seed": seed, "deadline_ms": deadline_ms, "workload": spec,
                     "ea": ea, "best": best, "seconds": round(time.perf_counter() - started, 1),
                     "rounds": rounds})
        each = "".join(
            " | " + " / ".join(f"{m:+.3f}" for m in rounds["margin_over_best_static"][n][:-1])
            for n in ("table", "queue-aware")) if rounds else ""
        print(f"| {shape} | {seed} | {deadline_ms:g} | `{spec}` | "
              f"{policies['table']['requests']} | "
              f"{ea['table']:.3f} | {ea['queue-aware']:.3f} | {best[7:]} {ea[best]:.3f} | "
              f"{ea['table'] - ea[best]:+.3f} | {ea['queue-aware'] - ea[best]:+.3f}{each} |",
              flush=True)
    (a.out / "bench_live.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
