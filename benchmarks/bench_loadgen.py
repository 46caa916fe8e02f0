"""Open-loop load client: send lag (sent - scheduled) and client CPU per request at 100, 300 and
500 req/s of Poisson arrivals against a real gearshift server (tiny pool, tiny-s at 2x1).

Run by hand (about a minute per repeat; the server runs as a separate process on 127.0.0.1):
    .venv/bin/python benchmarks/bench_loadgen.py --seconds 10 --repeat 2 [--aiohttp]
Target: send lag p99 < 5 ms at 500 req/s on 2 cores shared with the server. `--aiohttp` adds the
baseline that the raw client was chosen against: an aiohttp sender with keep-alive pooling,
the same schedule and the same pre-encoded bodies (needs `pip install aiohttp`). Loops and
senders are interleaved within each rate so that drift on a shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from gearshift.experiment.live import ServerArgs, live_server
from gearshift.loadgen.client import Percentiles, run_open_loop
from gearshift.loadgen.payloads import Payload, random_payloads
from gearshift.loadgen.workload import parse_workload
from gearshift.planning.table import PolicyRange, PolicyTable, save_policy
from gearshift.zoo.spec import load_pool_spec
from gearshift.zoo.tiny import build_tiny_pool

DEADLINE_MS = 1000.0  # generous: this measures the client, not the server


def server_args(folder: Path, port: int) -> ServerArgs:
    """`gearshift serve` of the tiny pool with a one-range policy (tiny-s at 2x1)."""
    spec_path = build_tiny_pool(folder)
    spec = load_pool_spec(spec_path)
    ranges = [PolicyRange(min_rps=0.0, max_rps=float("inf"), variant="tiny-s", replicas=2,
                          threads=1, p_on_time=1.0, effective_accuracy=0.6)]
    policy = folder / "policy.json"
    save_policy(PolicyTable(application=spec.application, pool_digest=spec.digest(),
                            deadline_ms=spec.deadline_ms, cores=2, ranges=ranges), policy)
    return ServerArgs(spec_path, policy, folder / "server.log", port=port, prewarm="table")


async def aiohttp_open_loop(url: str, model: str, arrivals: np.ndarray,
                            payloads: list[Payload]) -> tuple[Percentiles, int]:
    """Baseline sender: one task per request at its time, aiohttp keep-alive pool of 256."""
    import aiohttp

    lags: list[float] = []
    answered = 0
    headers = [{"Inference-Header-Content-Length": str(p.header_length),
                "Content-Type": "application/octet-stream"} for p in payloads]

    async def one(session: aiohttp.ClientSession, i: int, t0: float) -> None:
        nonlocal answered
        k = i % len(payloads)
        lags.append((time.perf_counter() - t0 - arrivals[i]) * 1000)
        async with session.post(f"http://{url}/v2/models/{model}/infer", data=payloads[k].body,
                                headers=headers[k]) as resp:
            await resp.read()
            answered += resp.status == 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        t0, tasks = time.perf_counter(), []
        for i, t in enumerate(arrivals):
            delay = t - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, t0)))
        await asyncio.gather(*tasks)
    return Percentiles.of(np.array(lags)), answered


def _loop_runner(loop: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if loop == "uvloop":
        import uvloop

        return uvloop.run
    return asyncio.run


def measure(sender: str, loop: str, url: str, arrivals: np.ndarray,
            payloads: list[Payload]) -> dict[str, Any]:
    """One run; client CPU is this process's CPU time (the server is another process)."""
    run = _loop_runner(loop)
    c0, w0 = time.process_time(), time.perf_counter()
    if sender == "aiohttp":
        lag, answered = run(aiohttp_open_loop(url, "tiny", arrivals, payloads))
        latency = None
    else:
        result = run(run_open_loop(url, "tiny", arrivals, payloads, DEADLINE_MS, timeout_s=30))
        lag, answered, latency = result.send_lag, result.answered, result.latency()
    cpu_s, wall_s = time.process_time() - c0, time.perf_counter() - w0
    return {"lag": lag, "answered": answered, "latency": latency,
            "cpu_ms": cpu_s * 1000 / len(arrivals), "cpu_pct": 100 * cpu_s / wall_s}


def row(rate: int, sender: str, loop: str, n: int, m: dict[str, Any]) -> str:
    lag, lat = m["lag"], m["latency"]
    latency = f"{lat.p50_ms:.1f} / {lat.p99_ms:.1f}" if lat is not None else "-"
    return (f"| {rate} | {sender} | {loop} | {n} | {m['answered']} | {lag.p50_ms:.2f} | "
            f"{lag.p99_ms:.2f} | {lag.max_ms:.1f} | {m['cpu_ms']:.3f} | {m['cpu_pct']:.0f}% | "
            f"{latency} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="arrivals per rate (s)")
    ap.add_argument("--rates", default="100,300,500", help="req/s, comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--loops", default="asyncio,uvloop")
    ap.add_argument("--aiohttp", action="store_true", help="add the aiohttp baseline")
    ap.add_argument("--port", type=int, default=18931)
    args = ap.parse_args()
    senders = [("gearshift", loop) for loop in args.loops.split(",")]
    if args.aiohttp:
        senders.append(("aiohttp", "asyncio"))
    with tempfile.TemporaryDirectory() as tmp, \
            live_server(server_args(Path(tmp), args.port), 60.0) as url:
        spec = load_pool_spec(Path(tmp) / "pool.yaml")
        payloads = random_payloads(spec, 64, seed=0, deadline_ms=DEADLINE_MS)
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
              f"{args.seconds:g} s of Poisson arrivals per row\n")
        print("| req/s | sender | loop | requests | answered | lag p50 ms | lag p99 ms | "
              "lag max ms | client CPU ms/req | client CPU | latency p50 / p99 ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for rep in range(args.repeat):
            for rate in (int(r) for r in args.rates.split(",")):
                arrivals = parse_workload(f"poisson:{rate}").arrivals(args.seconds, seed=rep)
                for sender, loop in senders:
                    m = measure(sender, loop, url, arrivals, payloads)
                    print(row(rate, sender, loop, len(arrivals), m), flush=True)


if __name__ == "__main__":
    main()
