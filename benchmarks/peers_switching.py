"""What a Ray Serve or MLServer user gets without gearshift: each ResNet variant deployed
statically on the peer, with its own overload behaviour, on the demo's exact arrivals and
deadline, against gearshift's live switching on the same arrivals (from the experiment's
records).

Each variant in turn. Ray Serve: 2 replicas x 1 thread (one CPU each), binary tensors (the
KServe binary extension, as gearshift's client sends), set up two ways, each a system of its
own: `ray`, Ray's own queue settings (`max_ongoing_requests` 1000, unbounded queue), and
`ray-bounded`, what a user who cares about a deadline would choose: `max_ongoing_requests` 1 (a
replica runs one inference at a time) and `max_queued_requests` = what the replicas can serve
within the deadline at their measured throughput (beyond it Ray answers 503 at once instead of
serving late). MLServer: 2 parallel workers x 1 thread, JSON (its REST server takes no binary tensors),
its defaults (it has no queue bound or deadline). The arrivals are the experiment's `table`
run's (`records/table.csv`, scheduled times), sent open loop by gearshift's client; on time =
answered within the deadline at the client. Effective accuracy = on-time fraction x the
variant's declared accuracy, as the experiment's. Runs inside a loopback-only network namespace
(needs root); the peers from `peers.py`'s venvs.

    .venv/bin/python benchmarks/peers_switching.py out/demo/resnet --pool out/demo/zoo/resnet/pool.yaml
        [--peers-out out/bench/peers] [--systems ray,ray-bounded,mlserver]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from gearshift.experiment.live import free_port

RAY_ONGOING = {"ray": 1000, "ray-bounded": 1}
"""Ray Serve's two set-ups, by `max_ongoing_requests`; the bounded one also bounds its queue."""


def scheduled(records: Path) -> np.ndarray:
    with records.open() as f:
        return np.sort(np.array([float(r["scheduled_s"]) for r in csv.DictReader(f)]))


def run_inside(a: argparse.Namespace) -> None:
    import tempfile

    from peers import APPS, json_payload, start, start_mlserver, stop, wait_ready, why_not

    from gearshift.loadgen.client import run_open_loop
    from gearshift.loadgen.payloads import random_payloads
    from gearshift.profiling.profile import load_profile
    from gearshift.types import Allocation
    from gearshift.zoo.spec import load_pool_spec

    summary = json.loads((a.experiment / "summary.json").read_text())
    deadline = float(summary["deadline_ms"])
    profile = load_profile(a.experiment / "profile.json")
    spec = load_pool_spec(a.pool)
    arrivals = scheduled(a.experiment / "records" / "table.csv")
    binary = random_payloads(spec, 16, seed=0, deadline_ms=deadline)
    venvs = a.peers_out.resolve() / "venvs"
    live = summary["policies"]
    tmp = Path(tempfile.mkdtemp(prefix="peers-switching-"))
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for system in a.systems.split(","):
        python = venvs / ("ray" if system in RAY_ONGOING else system) / "bin" / "python"
        for variant in spec.variant_names():
            model = spec.model_path(variant)
            if system in RAY_ONGOING:
                rps = profile.entry(variant, Allocation(2, 1)).throughput_rps
                # what 2 replicas clear within the deadline; -1: Ray's default (unbounded)
                queued = (max(1, math.floor(rps * deadline / 1000.0) - 2)
                          if system == "ray-bounded" else -1)
                port = free_port()
                proc = start([str(python), "ray_app.py", str(model), str(port), "2", "1",
                              str(queued), str(RAY_ONGOING[system])], cwd=APPS)
                url, payloads = f"127.0.0.1:{port}", binary
            else:
                queued = -1
                proc, http = start_mlserver(python, model, tmp / variant, 2, 1)
                url, payloads = http.removeprefix("http://"), [json_payload(model)]
            try:
                if not wait_ready(f"http://{url}", proc, 240):
                    print(f"{system} {variant}: did not start ({why_not(proc)})")
                    continue
                t0 = time.perf_counter()
                result = asyncio.run(run_open_loop(url, "model", arrivals, payloads,
                                                   deadline_ms=deadline, timeout_s=30.0))
                records = result.records
                on_time = sum(r.on_time for r in records) / len(records)
                shed = sum(r.status == 503 for r in records) / len(records)
                rows.setdefault(system, {})[variant] = {
                    "on_time": on_time, "shed": shed, "max_queued": queued,
                    "effective_accuracy": on_time * profile.accuracy[variant],
                    "seconds": time.perf_counter() - t0}
            finally:
                stop(proc)
    report(rows, live, len(arrivals), deadline)
    if a.json:
        a.json.write_text(json.dumps({**rows, "gearshift": {k: live[k] for k in live}},
                                     indent=1))


def report(rows: dict[str, dict[str, dict[str, float]]], live: dict[str, dict[str, float]],
           requests: int, deadline: float) -> None:
    """The table: every static deployment, gearshift's switching, and the margin over the
    best static deployment of each system and of them all."""
    names = {"ray": "Ray Serve (defaults)", "ray-bounded": "Ray Serve (bounded queue)",
             "mlserver": "MLServer"}
    print(f"{requests} requests (the experiment's arrivals), deadline {deadline:g} ms")
    print("| system | policy | effective accuracy | on time | shed (503) |")
    print("|---|---|---|---|---|")
    for system, by_variant in rows.items():
        for variant, r in by_variant.items():
            bound = f"{r['max_queued']:g}" if r["max_queued"] >= 0 else "unbounded"
            how = (f" (max_queued_requests {bound}, max_ongoing_requests "
                   f"{RAY_ONGOING[system]})" if system in RAY_ONGOING else "")
            print(f"| {names[system]} | static {variant}{how} | {r['effective_accuracy']:.3f} | "
                  f"{r['on_time']:.3f} | {r['shed']:.3f} |")
    for name in ("table", "queue-aware"):
        if name in live:
            print(f"| gearshift (the experiment's live run) | {name} | "
                  f"{live[name]['effective_accuracy']:.3f} | {live[name]['on_time']:.3f} | |")
    for system, by_variant in rows.items():
        best = max(by_variant.values(), key=lambda r: r["effective_accuracy"], default=None)
        if best is not None and "table" in live:
            print(f"gearshift `table` over the best static {names[system]} deployment: "
                  f"{live['table']['effective_accuracy'] - best['effective_accuracy']:+.3f}")
    every = [r["effective_accuracy"] for by_variant in rows.values() for r in by_variant.values()]
    if every and "table" in live:
        print(f"gearshift `table` over the best static deployment on any peer: "
              f"{live['table']['effective_accuracy'] - max(every):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path, help="an experiment's --out folder (make demo)")
    ap.add_argument("--pool", type=Path, required=True, help="the experiment's pool.yaml")
    ap.add_argument("--peers-out", type=Path, default=Path("out/bench/peers"))
    ap.add_argument("--systems", default="ray,ray-bounded,mlserver",
                    help="peers, commas: ray (its defaults), ray-bounded, mlserver")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.experiment, a.pool = a.experiment.resolve(), a.pool.resolve()
    from peers import NETNS_ENV, in_namespace  # run as a script, beside it

    if os.environ.get(NETNS_ENV) is None:
        raise SystemExit(in_namespace([str(Path(__file__).resolve()), *sys.argv[1:]]))
    run_inside(a)


if __name__ == "__main__":
    main()
