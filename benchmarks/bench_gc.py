"""Garbage-collector pauses in `gearshift serve` under load, and what they add to latency.

Run by hand (about a minute a run; the server on 127.0.0.1, bounded open-loop Poisson load):
    .venv/bin/python benchmarks/bench_gc.py out/demo/zoo/resnet/pool.yaml \\
        --serve-args "--policy out/demo/resnet/policy.json --profile out/demo/resnet/profile.json \\
        --controller static:resnet18" --rounds 3 --compare-src /tmp/before/src
Each run starts `gearshift serve POOL SERVE_ARGS` (by default a one-range policy table serving
`--variant` at `--replicas` x `--threads` statically), with a start-up hook that
times every full (generation 2) collection in the server's process, sends `--seconds` of
Poisson requests at `--rate`, and stops the server by its process id. It reports the full
collections that fell inside the run and each request's latency beyond its queue and service
time (the front end's and the path's share, where a pause lands). With `--compare-src`, every
round runs that checkout's server too (its `src` first on the path), the two alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.experiment.live import free_port, wait_ready
from gearshift.loadgen.arrivals import poisson_arrivals
from gearshift.loadgen.client import run_open_loop
from gearshift.loadgen.payloads import random_payloads
from gearshift.zoo.spec import load_pool_spec

HOOK = textwrap.dedent("""
    import gc, os, time
    _out = os.environ.get("GEARSHIFT_BENCH_GC")
    if _out:
        _t = [0.0]
        def _timed(phase, info):
            if phase == "start":
                _t[0] = time.perf_counter()
            elif info["generation"] == 2:
                with open(f"{_out}/{os.getpid()}.txt", "a") as f:
                    f.write(f"{time.time():.4f} {(time.perf_counter() - _t[0]) * 1000:.3f}\\n")
        gc.callbacks.append(_timed)
""")
"""sitecustomize.py for the server: every full collection's wall-clock end and length (ms)."""


@dataclass(frozen=True)
class RunResult:
    pauses_ms: list[float]  # the server's full collections inside the run
    beyond_ms: np.ndarray  # latency - queue - service of each answered request
    latency_p99_ms: float
    answered: int
    requests: int


def run_once(pool: Path, serve_args: list[str], src: Path | None, rate: float,
             seconds: float, seed: int, work: Path) -> RunResult:
    spec = load_pool_spec(pool)
    hook = work / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    logs = Path(tempfile.mkdtemp(dir=work))
    path = [str(p) for p in (src, hook) if p is not None]
    env = {**os.environ, "GEARSHIFT_BENCH_GC": str(logs),
           "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = logs / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gearshift.cli", "serve", str(pool),
                                 *serve_args, "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_ready(url, proc, log, 120.0)
        arrivals = poisson_arrivals(rate, seconds, seed)
        payloads = random_payloads(spec.input, 16, seed, spec.deadline_ms)
        start = time.time()
        result = asyncio.run(run_open_loop(url, spec.application, arrivals, payloads,
                                           spec.deadline_ms, timeout_s=30.0))
        end = time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    mine = logs / f"{proc.pid}.txt"
    pauses = [float(ms) for t, ms in (line.split() for line in
                                      (mine.read_text().splitlines() if mine.exists() else []))
              if start <= float(t) <= end]
    ok = [r for r in result.records if r.status == 200]
    beyond = np.array([r.latency_ms - r.queue_ms - r.service_ms for r in ok])
    p99 = float(np.percentile([r.latency_ms for r in ok], 99)) if ok else float("nan")
    return RunResult(pauses, beyond, p99, len(ok), len(result.records))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pool", type=Path)
    ap.add_argument("--variant", default="resnet18")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rate", type=float, default=30.0, help="requests/s (Poisson)")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve-args", default="",
                    help="arguments to `gearshift serve` after the pool (quoted as one)")
    ap.add_argument("--compare-src", type=Path, default=None,
                    help="another checkout's src directory, run alternately")
    args = ap.parse_args()
    from bench_frontend import static_policy

    sides: list[tuple[str, Path | None]] = [("this checkout", None)]
    if args.compare_src is not None:
        sides.insert(0, (f"{args.compare_src}", args.compare_src.resolve()))
    print("| server | round | full collections in the run (ms) | latency beyond queue + "
          "service: p99 / max ms | requests over 20 ms | latency p99 ms | answered |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        serve_args = shlex.split(args.serve_args) or ["--policy", str(static_policy(
            args.pool, args.variant, args.replicas, args.threads, args.replicas * args.threads,
            work / "policy.json"))]
        for k in range(args.rounds):
            for name, src in sides:
                r = run_once(args.pool, serve_args, src, args.rate, args.seconds, k, work)
                pauses = ", ".join(f"{p:.0f}" for p in r.pauses_ms) or "none"
                print(f"| {name} | {k + 1} | {pauses} | {np.percentile(r.beyond_ms, 99):.1f} / "
                      f"{r.beyond_ms.max():.1f} | {int((r.beyond_ms > 20).sum())} | "
                      f"{r.latency_p99_ms:.1f} | {r.answered} of {r.requests} |", flush=True)


if __name__ == "__main__":
    main()
