"""The live half of an experiment: a real `gearshift serve` process on 127.0.0.1, driven by the
open-loop load generator once per policy, the controller swapped between runs (no reload)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from gearshift.dispatch import FREE_WAIT_S
from gearshift.errors import GearshiftError
from gearshift.loadgen.client import run_open_loop
from gearshift.loadgen.payloads import Payload
from gearshift.progress import StepCallback as Progress
from gearshift.stopping import SERVER_STOP_S, stop
from gearshift.types import RequestRecord


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerArgs:
    pool: Path
    policy: Path
    log: Path
    profile: Path | None = None
    control_log: Path | None = None
    period_s: float = 0.5
    port: int = 0  # 0: a free port
    prewarm: str = "all"
    controller_options: tuple[tuple[str, float], ...] = ()  # --controller-option KEY=NUMBER


@contextmanager
def live_server(args: ServerArgs, ready_timeout_s: float = 600.0) -> Iterator[str]:
    """Start `gearshift serve` on 127.0.0.1 (every RxT pre-loaded); yield its base URL once
    ready; stop it with SIGTERM (then SIGKILL after `SERVER_STOP_S`) by its process id."""
    port = args.port or free_port()
    cmd = [sys.executable, "-m", "gearshift.cli", "serve", str(args.pool),
           "--policy", str(args.policy), "--port", str(port), "--period-s", str(args.period_s),
           "--prewarm", args.prewarm]
    if args.profile is not None:
        cmd += ["--profile", str(args.profile)]
    if args.control_log is not None:
        cmd += ["--control-log", str(args.control_log)]
    for key, value in args.controller_options:
        cmd += ["--controller-option", f"{key}={value!r}"]
    args.log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with args.log.open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        wait_ready(url, proc, args.log, ready_timeout_s)
        yield url
    finally:
        if proc is not None:
            stop(proc, SERVER_STOP_S)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Until `url` answers ready; a clear error (with the log's tail) if `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise GearshiftError(f"the server exited with status {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise GearshiftError(f"the server at {url} was not ready after {timeout_s:.0f} s (see {log})")


def set_controller(url: str, name: str) -> None:
    """Switch the server at `url` to the controller `name`; raises GearshiftError if it says no."""
    r = httpx.put(f"{url}/gearshift/controller", json={"controller": name}, timeout=300.0)
    if r.status_code != 200:
        raise GearshiftError(f"switching the server to {name} failed: {r.text}")


def wait_idle(url: str, timeout_s: float = 120.0) -> None:
    """Until nothing is queued or in flight (the previous run's stragglers are answered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = httpx.get(f"{url}/gearshift/status", timeout=5.0).json()
        if st["queue_length"] == 0 and st["in_flight"] == 0:
            return
        time.sleep(0.2)


@dataclass(frozen=True)
class LiveRun:
    records: list[RequestRecord]
    started_unix_s: float  # wall-clock time of the run's t = 0 (aligns the control log)
    send_lag_p99_ms: float


def measure_overhead_ms(url: str, variant: str, service_ms: float, payloads: list[Payload],
                        count: int = 60) -> list[float]:
    """The serving path's own cost per request through HTTP, as the load generator sees it:
    latency minus queue and service time, at a load light enough that nothing queues
    (`variant` pinned, one request every 2 x its service time + 5 ms)."""
    wait_idle(url)
    gap_s = (2.0 * service_ms + 5.0) / 1000.0
    arrivals = np.arange(count, dtype=float) * gap_s
    result = asyncio.run(run_open_loop(url, variant, arrivals, payloads, 60_000.0,
                                       timeout_s=30.0))
    return [max(0.0, r.latency_ms - r.queue_ms - r.service_ms)
            for r in result.records if r.status == 200]


def measure_capacity_rps(url: str, variant: str, payloads: list[Payload], offered_rps: float,
                         seconds: float = 2.0) -> float:
    """Requests/s the server answers through HTTP when offered more than it can take (bounded:
    `seconds` of Poisson arrivals at `offered_rps`, `variant` pinned)."""
    wait_idle(url)
    count = max(10, int(offered_rps * seconds))
    arrivals = np.sort(np.random.default_rng(0).uniform(0.0, seconds, count))
    result = asyncio.run(run_open_loop(url, variant, arrivals, payloads, 60_000.0,
                                       timeout_s=30.0))
    done = [r.completed_s for r in result.records if r.status == 200]
    wait_idle(url)
    return len(done) / max(max(done, default=seconds), seconds)


@dataclass(frozen=True)
class ServiceSamples:
    """`service_ms`: worker-side service times; `idle_overhead_ms`, `busy_overhead_ms`: the
    serving path's own cost (latency minus queue and service time) of the requests dispatched
    at once and of those that waited for a replica; `path_ms`: latency minus service time of
    every answered request, any wait to be dispatched included."""

    service_ms: list[float]
    idle_overhead_ms: list[float]
    busy_overhead_ms: list[float]
    path_ms: list[float]


def measure_service_ms(url: str, controller: str, variant: str, rate_rps: float, count: int,
                       payloads: list[Payload], seed: int, settle_s: float = 0.3,
                       warmup_s: float = 0.0) -> ServiceSamples:
    """Worker-side service times (ms) of `count` Poisson requests at `rate_rps` through HTTP,
    served by `controller` (a static policy, e.g. `static:resnet50@2x1`) with `variant` asked
    for: what a request costs with the front end and the load generator on the same cores;
    and the overhead of those that queued (the front end beside busy replicas). `path_ms`
    leaves out the requests of the first `warmup_s` (a run starting at a high rate meets a
    cold path for its first few hundred ms)."""
    wait_idle(url)
    set_controller(url, controller)
    time.sleep(settle_s)
    gaps = np.random.default_rng(seed).exponential(1.0 / rate_rps, count)
    arrivals = np.cumsum(gaps) - gaps[0]
    result = asyncio.run(run_open_loop(url, variant, arrivals, payloads, 60_000.0,
                                       timeout_s=60.0))
    answered = [r for r in result.records if r.status == 200]
    waited = [r.queue_ms >= FREE_WAIT_S * 1000.0 for r in answered]
    overhead = [max(0.0, r.latency_ms - r.queue_ms - r.service_ms) for r in answered]
    return ServiceSamples([r.service_ms for r in answered],
                          [o for o, w in zip(overhead, waited, strict=True) if not w],
                          [o for o, w in zip(overhead, waited, strict=True) if w],
                          [max(0.0, r.latency_ms - r.service_ms) for r in answered
                           if r.scheduled_s >= warmup_s])


def run_policy(url: str, model: str, name: str, arrivals_s: np.ndarray,
               payloads: list[Payload], deadline_ms: float, settle_s: float, quiet_s: float,
               progress: Progress | None = None) -> LiveRun:
    """Once the run before is answered and `quiet_s` has passed (at least a control period:
    its last arrivals are then observed by its own policy), switch the server to policy
    `name`, let it settle, replay `arrivals_s` open-loop. Without the quiet, a switching
    policy's first period counted the last requests of the run before: live, `queue-aware`
    read 10 requests/s from them, went to ResNet-50 and met a step to 1.1 x capacity with it,
    its backlog never drained (a step path at 120 ms: 194 requests late against 139 for
    `table`, whose tail it was)."""
    wait_idle(url)
    time.sleep(quiet_s)
    set_controller(url, name)
    time.sleep(settle_s)
    result = asyncio.run(run_open_loop(
        url, model, arrivals_s, payloads, deadline_ms,
        timeout_s=max(10.0, 5 * deadline_ms / 1000.0), progress=progress))
    return LiveRun(list(result.records), result.started_unix_s, result.send_lag.p99_ms)
