"""What the cluster's routing costs a request: the same tiny pool and static policy served by a
two-node Ray cluster on this machine (`gearshift.ray`, one core a node) and by one
`gearshift serve`, the same open-loop JSON load, A/B interleaved; latency percentiles of
each. Runs itself inside a loopback-only network namespace (needs root): Ray binds beyond
loopback even when told not to.

    .venv/bin/python benchmarks/bench_cluster_local.py [--rate 20] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gearshift.experiment.live import free_port
from gearshift.zoo.spec import load_pool_spec
from gearshift.zoo.tiny import build_tiny_pool

HEAD_PORT = 6391


def ray_cli(home: Path, *args: str) -> None:
    env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(Path(sys.executable).with_name("ray")), *args], check=True, env=env,
                   timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_inside(a: argparse.Namespace) -> None:
    import ray
    from bench_frontend import static_policy
    from peers import System, json_payload, measure, start, stop, wait_ready
    from ray import serve

    from gearshift.ray import app

    tmp = Path(tempfile.mkdtemp(prefix="gsc-", dir="/tmp"))
    pool = build_tiny_pool(tmp / "tiny")
    spec = load_pool_spec(pool)
    first = spec.variant_names()[0]
    policy = static_policy(pool, first, 1, 1, 1, tmp / "policy.json")
    model = spec.model_path(first)
    payload = json_payload(model)
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    single = None
    try:
        ray_cli(tmp, "start", "--head", "--port", str(HEAD_PORT), "--temp-dir",
                str(tmp / "ray"), "--include-dashboard", "false", *common)
        ray_cli(tmp, "start", "--address", f"127.0.0.1:{HEAD_PORT}", *common)
        os.environ["HOME"] = str(tmp)
        ray.init(address=f"127.0.0.1:{HEAD_PORT}", log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(app({"pool": str(pool), "policy": str(policy), "controller": "table:paper",
                       "nodes": "2", "prewarm": "none"}),
                  name="gearshift", route_prefix="/", blocking=False)
        single_port = free_port()
        single = start([sys.executable, "-m", "gearshift.cli", "serve", str(pool), "--policy",
                        str(policy), "--port", str(single_port), "--controller", "table:paper",
                        "--prewarm", "none"])
        systems = [System("gearshift on Ray (2 nodes)", f"http://127.0.0.1:{port}",
                          spec.application, single),
                   System("gearshift serve (1 node)", f"http://127.0.0.1:{single_port}",
                          spec.application, single)]
        for s in systems:
            if not wait_ready(s.url, single, 240):
                raise SystemExit(f"{s.name} did not become ready")
        for r in range(a.rounds):
            for s in (systems if r % 2 == 0 else systems[::-1]):
                measure(s, a.rate, a.seconds, payload, seed=r)
        out = {s.name: s.points[a.rate].summary() for s in systems}
        print(f"| system | offered req/s | answered | p50 ms | p99 ms |  ({a.rounds} rounds of "
              f"{a.seconds:g} s, medians)")
        print("|---|---|---|---|---|")
        for name, p in out.items():
            print(f"| {name} | {p['offered_rps']:g} | {p['answered']:.3f} | "
                  f"{p['p50_ms']:.1f} | {p['p99_ms']:.1f} |")
        names = list(out)
        print(f"routing through the cluster: +{out[names[0]]['p50_ms'] - out[names[1]]['p50_ms']:.1f}"
              f" ms at p50, x{out[names[0]]['p50_ms'] / out[names[1]]['p50_ms']:.2f}")
        if a.json:
            a.json.write_text(json.dumps(out, indent=1))
        serve.shutdown()
        ray.shutdown()  # before `ray stop`: a connected driver prints every process's end
    finally:
        if single is not None:
            stop(single)
        try:
            ray_cli(tmp, "stop", "--force")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0, help="offered req/s")
    ap.add_argument("--seconds", type=float, default=10.0, help="per round and system")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from peers import NETNS_ENV, in_namespace  # run as a script, beside it

    if os.environ.get(NETNS_ENV):
        t0 = time.perf_counter()
        run_inside(a)
        print(f"in {time.perf_counter() - t0:.0f} s")
        return
    raise SystemExit(in_namespace([str(Path(__file__).resolve()), *sys.argv[1:]]))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
