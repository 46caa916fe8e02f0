"""The front end's own cost: latency added over the replica's service time, and the request rate
sustained with a trivially small variant, beside a bare Starlette/uvicorn echo in the same run.

Run by hand (about two minutes; both servers on 127.0.0.1, bounded open-loop load):
    .venv/bin/python benchmarks/bench_frontend.py --seconds 5
Both servers get the same pre-encoded binary KServe V2 body from the same open-loop client
(`gearshift.loadgen.client`), rates interleaved (echo, gearshift, echo, ...). "Sustained" is the
highest offered rate at which >= 99% of requests were answered with p99 latency under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

from gearshift.experiment.live import free_port
from gearshift.loadgen.arrivals import poisson_arrivals
from gearshift.loadgen.client import run_open_loop
from gearshift.loadgen.payloads import random_payloads
from gearshift.planning.table import PolicyRange, PolicyTable, save_policy
from gearshift.zoo.spec import load_pool_spec
from gearshift.zoo.tiny import TinySpec, build_tiny_pool

ECHO = textwrap.dedent("""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def infer(request):
        await request.body()
        return JSONResponse({"model_name": "echo", "outputs": [], "parameters": {}})

    app = Starlette(routes=[Route("/v2/models/{name}/infer", infer, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), log_level="warning",
                access_log=False)
""")


def _wait(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    for _ in range(600):
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(url + path, timeout=1).status_code in (200, 404, 405):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def static_policy(pool: Path, variant: str, replicas: int, threads: int, cores: int,
                  path: Path, deadline_ms: float | None = None) -> Path:
    """A policy table of one range: `variant` at R x T whatever the load (a static server),
    for `pool` (deadline: the pool's unless given)."""
    spec = load_pool_spec(pool)
    save_policy(PolicyTable(
        application=spec.application, pool_digest=spec.digest(),
        deadline_ms=spec.deadline_ms if deadline_ms is None else deadline_ms, cores=cores,
        ranges=[PolicyRange(min_rps=0, max_rps=float("inf"), variant=variant, replicas=replicas,
                            threads=threads, p_on_time=1,
                            effective_accuracy=spec.accuracy_of(variant))]), path)
    return path


def nop_server_files(tmp: Path) -> tuple[Path, Path]:
    """(pool.yaml, policy.json) in `tmp`: one 1-unit MLP ("nop": the cost is the serving
    path's) served statically by 2 replicas x 1 thread."""
    pool = build_tiny_pool(tmp / "pool", (TinySpec("nop", depth=0, width=1, accuracy=0.5),))
    return pool, static_policy(pool, "nop", 2, 1, 2, tmp / "policy.json", deadline_ms=1000)


def _start_gearshift(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    pool, policy = nop_server_files(tmp)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gearshift.cli", "serve", str(pool),
                             "--policy", str(policy), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait(url, proc, "/v2/health/ready")
    return proc, url


def _start_echo() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait(url, proc, "/")
    return proc, url


def _run(url: str, model: str, rate: float, seconds: float, payloads: list) -> dict[str, float]:
    arrivals = poisson_arrivals(rate, seconds, seed=int(rate))
    res = asyncio.run(run_open_loop(url, model, arrivals, payloads, 1000.0, timeout_s=10.0))
    ok = [r for r in res.records if r.status == 200]
    lat = np.array([r.latency_ms for r in ok]) if ok else np.array([np.nan])
    added = np.array([r.latency_ms - r.service_ms for r in ok]) if ok else np.array([np.nan])
    return {"answered": len(ok) / max(1, len(res.records)), "rate": len(ok) / seconds,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "added_p50": float(np.percentile(added, 50)),
            "added_p99": float(np.percentile(added, 99)),
            "lag_p99": res.send_lag.p99_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rates", default="100,300,600,1000,1500,2000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gs, gs_url = _start_gearshift(Path(tmp))
        echo, echo_url = _start_echo()
        payloads = random_payloads(load_pool_spec(Path(tmp) / "pool" / "pool.yaml"), 8, 0, 1000)
        try:
            print("| offered req/s | server | answered | req/s | p50 ms | p99 ms "
                  "| added p50 ms | added p99 ms | send lag p99 ms |")
            print("|---|---|---|---|---|---|---|---|---|")
            for rate in (float(r) for r in args.rates.split(",")):
                for name, url, model in (("echo", echo_url, "echo"), ("gearshift", gs_url, "tiny")):
                    r = _run(url, model, rate, args.seconds, payloads)
                    print(f"| {rate:.0f} | {name} | {r['answered']:.3f} | {r['rate']:.0f} | "
                          f"{r['p50']:.2f} | {r['p99']:.2f} | {r['added_p50']:.2f} | "
                          f"{r['added_p99']:.2f} | {r['lag_p99']:.2f} |", flush=True)
                    time.sleep(1.0)
        finally:
            for proc in (gs, echo):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


if __name__ == "__main__":
    main()
