"""Overload soak: `gearshift serve` held at several times its capacity, then released.

A real `gearshift serve` process (static controller on the pool's fastest variant, 2 replicas x 1
thread) on 127.0.0.1 gets an open-loop Poisson load at `--factor` x its capacity for
`--seconds`, between a light baseline before and a light tail after. Beside the load, a prober
asks `/v2/health/ready` every 100 ms and a sampler reads the resident memory of the server and
its replicas every 0.5 s. It reports and checks:

- every request got exactly one answer, and only 200, 503 (with `Retry-After`) or 504;
- memory in the second half of the overload against the first (nothing grows with requests);
- readiness latency (target: every probe within 100 ms; p99 or max beyond it is a problem);
- recovery: how long after the overload ends until latency is back near the baseline.

The capacity is measured first: the served rate of a short saturating burst.

    .venv/bin/python -m benchmarks.soak --seconds 60 --factor 5

`tests/test_soak.py` runs a short version of the same function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from gearshift.experiment.live import free_port, wait_ready
from gearshift.loadgen.client import LoadResult, run_open_loop
from gearshift.loadgen.payloads import random_payloads
from gearshift.planning.table import PolicyRange, PolicyTable, save_policy
from gearshift.types import RequestRecord
from gearshift.zoo.spec import PoolSpec, load_pool_spec
from gearshift.zoo.tiny import TinySpec, build_tiny_pool

SOAK_FAMILY = (  # heavy enough (~19 ms on 1 thread here) that the replicas, not the HTTP
    # path, bound the capacity, so 5x overload is a rate the load generator can send
    TinySpec("soak-s", depth=8, width=96, accuracy=0.6, conv=True),
    TinySpec("soak-l", depth=10, width=96, accuracy=0.7, conv=True),
)
ANSWERS = {200, 503, 504}
READY_MS = 100.0  # target: /v2/health/ready answers within this, under any load


@dataclass
class SoakResult:
    capacity_rps: float
    offered_rps: float
    seconds: float
    requests: int
    statuses: dict[int, int]
    unanswered: int  # client-side failures: no HTTP answer (must be 0)
    retry_after_seen: bool | None  # a 503 sampled beside the load carried Retry-After (None:
    # the sampler met no 503: too few of them, as when a loaded machine's capacity is low)
    probes: int
    probe_failures: int
    probe_p99_ms: float
    probe_max_ms: float
    rss_before_mb: float  # server + replicas, median over the light load before the overload
    rss_first_half_mb: float  # server + replicas, median over the first half of the overload
    rss_second_half_mb: float
    rss_max_mb: float
    rss_after_mb: float  # median over the light load after the overload
    baseline_p50_ms: float
    recovery_s: float  # from the end of the overload until a request's latency is < 2x baseline
    tail_p50_ms: float
    exit_code: int
    children_left: int
    shm_left: int
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What breaks the soak's promises (empty: none)."""
        out = []
        if self.unanswered:
            out.append(f"{self.unanswered} requests got no answer")
        bad = {s: n for s, n in self.statuses.items() if s not in ANSWERS}
        if bad:
            out.append(f"statuses other than 200/503/504: {bad}")
        if self.statuses.get(503) and self.retry_after_seen is False:
            out.append("503s without Retry-After")
        if self.probe_failures:
            out.append(f"{self.probe_failures} readiness probes failed or were not 200")
        if not self.probe_p99_ms <= READY_MS:
            out.append(f"readiness p99 {self.probe_p99_ms} ms exceeds {READY_MS:g} ms")
        if not self.probe_max_ms <= READY_MS:
            out.append(f"readiness max {self.probe_max_ms} ms exceeds {READY_MS:g} ms")
        return out + exit_problems(self.exit_code, self.children_left, self.shm_left)


def exit_problems(exit_code: int, children_left: int, shm_left: int) -> list[str]:
    """What a server's stop left wrong: a non-zero exit, processes or /dev/shm entries."""
    out = []
    if exit_code != 0:
        out.append(f"server exited with {exit_code}")
    if children_left or shm_left:
        out.append(f"left behind: {children_left} processes, {shm_left} /dev/shm")
    return out


def soak_pool(out: Path) -> Path:
    return build_tiny_pool(out, SOAK_FAMILY, (1, 64, 64), application="soak", deadline_ms=200.0)


def _policy(spec: PoolSpec, path: Path) -> Path:
    fastest = spec.variant_names()[0]
    only = PolicyRange(min_rps=0.0, max_rps=float("inf"), variant=fastest, replicas=2, threads=1,
                       p_on_time=1.0, effective_accuracy=0.6)
    save_policy(PolicyTable(application=spec.application, pool_digest=spec.digest(),
                            deadline_ms=spec.deadline_ms, cores=2, ranges=[only]), path)
    return path


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in
                Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], _children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None if it is gone or a zombie: with
    the pid, it names one process even if the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    return None if fields[0] in ("Z", "X") else fields[19]


def _shm_entries(pid: int) -> int:
    return len(list(Path("/dev/shm").glob(f"gearshift-{pid}-*")))


class _Sampler(threading.Thread):
    """Readiness probes every 100 ms and memory every 0.5 s, until stopped."""

    def __init__(self, url: str, pid: int, seen: Callable[[], list[int]] | None = None) -> None:
        """`seen()`: record the server's processes now, and return them."""
        super().__init__(daemon=True)
        self.url, self.pid, self.seen = url, pid, seen or (lambda: _children(pid))
        self.stop = threading.Event()
        self.probe_ms: list[float] = []
        self.probe_failures = 0
        self.rss: list[tuple[float, float]] = []  # (monotonic s, MB)

    def run(self) -> None:
        next_rss = 0.0
        with httpx.Client(timeout=2.0) as client:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    ok = client.get(f"http://{self.url}/v2/health/ready").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.probe_ms.append((time.monotonic() - t0) * 1000.0)
                self.probe_failures += not ok
                if t0 >= next_rss:
                    kb = _rss_kb(self.pid) + sum(_rss_kb(c) for c in self.seen())
                    self.rss.append((t0, kb / 1024.0))
                    next_rss = t0 + 0.5
                self.stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))


def _retry_after_seen(url: str, body: bytes, headers: dict[str, str], tries: int
                      ) -> bool | None:
    """Send a few requests beside the load: does a 503 carry Retry-After? (None: no 503.)"""
    with httpx.Client(timeout=5.0) as client:
        for _ in range(tries):
            r = client.post(f"http://{url}/v2/models/soak/infer", content=body, headers=headers)
            if r.status_code == 503:
                return "retry-after" in r.headers
            time.sleep(0.05)
    return None


def _poisson(rate: float, seconds: float, rng: np.random.Generator, start: float = 0.0
             ) -> np.ndarray:
    n = rng.poisson(rate * seconds)
    return np.sort(rng.uniform(start, start + seconds, n))


def _run_load(url: str, arrivals: np.ndarray, spec: PoolSpec) -> LoadResult:
    payloads = random_payloads(spec, 16, 0, spec.deadline_ms)
    return asyncio.run(run_open_loop(url, spec.application, arrivals, payloads,
                                     spec.deadline_ms, timeout_s=30.0))


def _load(url: str, arrivals: np.ndarray, spec: PoolSpec) -> list[RequestRecord]:
    return list(_run_load(url, arrivals, spec).records)


@dataclass
class _Served:
    """A `gearshift serve` process on the soak pool, stopped by SIGTERM."""

    spec: PoolSpec
    url: str
    proc: subprocess.Popen[bytes]
    exit_code: int | None = None
    started: dict[int, str] = field(default_factory=dict)  # every process it ran: start time

    def record(self) -> list[int]:
        """Note the server's processes (replicas and helpers) now; returns them."""
        pids = _descendants(self.proc.pid)
        for pid in pids:
            st = _start_time(pid)
            if st is not None:
                self.started.setdefault(pid, st)
        return pids

    def terminate(self) -> int:
        self.record()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_code = self.proc.wait()
        end = time.monotonic() + 5.0  # the replicas' exits
        while self._alive() and time.monotonic() < end:
            time.sleep(0.05)
        return self.exit_code

    def _alive(self) -> list[int]:
        return [p for p, st in self.started.items() if _start_time(p) == st]

    def left_behind(self) -> tuple[int, int]:
        """(processes, /dev/shm entries) of the server still there: every process recorded
        while it ran (at readiness, by the sampler and just before SIGTERM) is checked by pid
        and start time (after the server is reaped, /proc no longer links it to its children)."""
        assert self.started, "no process of the server was recorded"
        return len(self._alive()), _shm_entries(self.proc.pid)


def _serve(work: Path, max_queue: int) -> _Served:
    spec_path = soak_pool(work / "pool")
    spec = load_pool_spec(spec_path)
    policy = _policy(spec, work / "policy.json")
    port = free_port()
    url = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gearshift.cli", "serve", str(spec_path), "--policy",
           str(policy), "--port", str(port), "--controller",
           f"static:{spec.variant_names()[0]}@2x1", "--max-queue", str(max_queue),
           "--prewarm", "none"]
    with (work / "server.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    served = _Served(spec, url, proc)
    try:
        wait_ready(f"http://{url}", proc, work / "server.log", 60.0)
    except BaseException:
        served.terminate()
        raise
    served.record()
    return served


def _capacity(served: _Served, rng: np.random.Generator) -> float:
    """The served rate (200s per second) of a short saturating burst."""
    burst = _load(served.url, _poisson(600.0, 2.0, rng), served.spec)
    ok = [r for r in burst if r.status == 200]
    span = max(r.completed_s for r in ok) - min(r.sent_s for r in ok) if ok else 1.0
    time.sleep(1.0)
    return len(ok) / max(span, 1e-3)


def run_soak(work: Path, seconds: float = 10.0, factor: float = 5.0, seed: int = 0,
             max_queue: int = 32) -> SoakResult:
    """Start a server on the soak pool, measure its capacity, overload it, release it, stop it
    by SIGTERM; everything it started is checked gone afterwards."""
    served = _serve(work, max_queue)
    url, spec = served.url, served.spec
    try:
        rng = np.random.default_rng(seed)
        capacity = _capacity(served, rng)
        sampler = _Sampler(url, served.proc.pid, served.record)
        sampler.start()
        light = 0.3 * capacity
        base_s, tail_s = 3.0, 4.0
        arrivals = np.concatenate([
            _poisson(light, base_s, rng),
            _poisson(factor * capacity, seconds, rng, base_s),
            _poisson(light, tail_s, rng, base_s + seconds)])
        body, headers = _one_request(spec)
        probe_503: list[bool | None] = []
        tries = max(20, int(seconds / 2 / 0.05))  # through the second half of the overload

        def probe() -> None:  # a 503 with Retry-After, asked through the overload's second half
            time.sleep(base_s + seconds / 2)
            probe_503.append(_retry_after_seen(url, body, headers, tries))

        side = threading.Thread(target=probe, daemon=True)
        t_load = time.monotonic()
        side.start()
        records = _load(url, arrivals, spec)
        side.join(30)
        sampler.stop.set()
        sampler.join(5)
    finally:
        code = served.terminate()
    children, shm = served.left_behind()
    statuses = _count(records)
    rel = [(t - t_load, mb) for t, mb in sampler.rss]
    over = [(t, mb) for t, mb in rel if base_s <= t <= base_s + seconds]
    before = [mb for t, mb in rel if t < base_s] or [0.0]
    after = [mb for t, mb in rel if t > base_s + seconds] or [0.0]
    half = base_s + seconds / 2
    first = [mb for t, mb in over if t < half] or [0.0]
    second = [mb for t, mb in over if t >= half] or [0.0]
    base = [r.latency_ms for r in records if r.status == 200 and r.scheduled_s < base_s]
    base_p50 = float(np.median(base)) if base else float("nan")
    end = base_s + seconds
    tail = [r for r in records if r.scheduled_s >= end]
    recovered = next((r.scheduled_s - end for r in tail
                      if r.status == 200 and r.latency_ms < 2 * base_p50), float("inf"))
    tail_ok = [r.latency_ms for r in tail if r.status == 200 and r.scheduled_s >= end + 2.0]
    probes = np.array(sampler.probe_ms) if sampler.probe_ms else np.array([np.nan])
    return SoakResult(
        capacity_rps=round(capacity, 1), offered_rps=round(factor * capacity, 1),
        seconds=seconds, requests=len(records), statuses=dict(sorted(statuses.items())),
        unanswered=statuses.get(0, 0), retry_after_seen=probe_503[0] if probe_503 else None,
        probes=len(sampler.probe_ms), probe_failures=sampler.probe_failures,
        probe_p99_ms=round(float(np.percentile(probes, 99)), 1),
        probe_max_ms=round(float(np.max(probes)), 1),
        rss_before_mb=round(float(np.median(before)), 1),
        rss_first_half_mb=round(float(np.median(first)), 1),
        rss_second_half_mb=round(float(np.median(second)), 1),
        rss_max_mb=round(max(mb for _, mb in sampler.rss) if sampler.rss else 0.0, 1),
        rss_after_mb=round(float(np.median(after)), 1),
        baseline_p50_ms=round(base_p50, 2), recovery_s=round(recovered, 2),
        tail_p50_ms=round(float(np.median(tail_ok)), 2) if tail_ok else float("nan"),
        exit_code=code, children_left=children, shm_left=shm)


@dataclass
class DrainResult:
    requests: int
    sent_before_signal: int
    statuses_before: dict[int, int]  # of requests sent before SIGTERM
    statuses_after: dict[int, int]  # of those sent after (0: refused, never accepted)
    exit_code: int
    children_left: int
    shm_left: int

    def problems(self) -> list[str]:
        out = []
        lost = {s: n for s, n in self.statuses_before.items() if s not in (200, 504)}
        if lost:
            out.append(f"requests sent before SIGTERM answered otherwise: {lost}")
        if any(s not in (0, 200, 503, 504) for s in self.statuses_after):
            out.append(f"after SIGTERM: {self.statuses_after}")
        return out + exit_problems(self.exit_code, self.children_left, self.shm_left)


def run_sigterm_under_load(work: Path, seconds: float = 6.0, factor: float = 0.8,
                           seed: int = 1) -> DrainResult:
    """SIGTERM half-way through a load near capacity: everything sent before it is answered
    (a result, or 504 for a deadline it could not make), nothing is left behind."""
    served = _serve(work, 1024)
    try:
        rng = np.random.default_rng(seed)
        capacity = _capacity(served, rng)
        arrivals = _poisson(factor * capacity, seconds, rng)
        signalled: list[float] = []  # the signal's wall-clock time

        def stop_half_way(t0: float) -> None:
            time.sleep(max(0.0, t0 + seconds / 2 - time.monotonic()))
            signalled.append(time.time())
            served.proc.send_signal(signal.SIGTERM)

        t0 = time.monotonic()
        killer = threading.Thread(target=stop_half_way, args=(t0,), daemon=True)
        killer.start()
        run = _run_load(served.url, arrivals, served.spec)
        killer.join(10)
    finally:
        code = served.terminate()
    children, shm = served.left_behind()
    records = list(run.records)
    # on the run's clock, which starts once the client is ready (after t0)
    cut = signalled[0] - run.started_unix_s - 0.05 if signalled else float("inf")
    before = [r for r in records if r.sent_s < cut]
    after = [r for r in records if not r.sent_s < cut]
    return DrainResult(len(records), len(before), _count(before), _count(after), code,
                       children, shm)


def _count(records: list[RequestRecord]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in records:
        out[r.status] = out.get(r.status, 0) + 1
    return dict(sorted(out.items()))


def _one_request(spec: PoolSpec) -> tuple[bytes, dict[str, str]]:
    p = random_payloads(spec, 1, 1, spec.deadline_ms)[0]
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(p.header_length)}
    return p.body, headers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="overload duration")
    ap.add_argument("--factor", type=float, default=5.0, help="offered load / capacity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("out/soak"))
    ap.add_argument("--json", type=Path, help="write the result here too")
    ap.add_argument("--sigterm", action="store_true",
                    help="instead: SIGTERM half-way through a load near capacity")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    res: SoakResult | DrainResult = (run_sigterm_under_load(a.work, a.seconds) if a.sigterm
                                     else run_soak(a.work, a.seconds, a.factor, a.seed))
    doc = asdict(res) | {"problems": res.problems()}
    print(json.dumps(doc, indent=1))
    if a.json:
        a.json.write_text(json.dumps(doc, indent=1))
    sys.exit(1 if res.problems() else 0)


if __name__ == "__main__":
    main()
