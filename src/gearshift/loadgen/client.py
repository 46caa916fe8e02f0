"""Open-loop KServe V2 load client: every request leaves at its scheduled time, whatever the answers.

A raw asyncio HTTP/1.1 client (httptools parses responses) over a pool of keep-alive
connections: measured on 2 busy cores against the tiny pool it costs ~0.3-0.6 ms of CPU per
request, half of aiohttp's, and kept the send lag p99 below 4 ms at 500 req/s where an aiohttp
sender's reached 22-35 ms (benchmarks/bench_loadgen.py). Bodies are pre-encoded (`payloads.Payload`); per
request the sender writes bytes, and on the answer parses only the JSON header and, when the
payload has a label, the first output's bytes.

Bounds: at most `max_connections` connections; a request waits (in order) for a free one and
its `sent_s` is when it was written. A request unanswered `timeout_s` after it was sent, or not
sent `timeout_s` after it was scheduled, fails; the run ends at the latest `timeout_s` after the
last scheduled time (the clock starts once a few connections are open: at most 2 s before). Every scheduled request gets exactly one `RequestRecord`; failures have
status 0 and say why. `sent_s` is NaN only for a request that was never attempted.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
import numpy as np

from gearshift.errors import GearshiftError
from gearshift.heap import quieter_collection
from gearshift.loadgen.payloads import Answer, Payload, parse_answer
from gearshift.progress import StepCallback as Progress
from gearshift.types import RequestRecord

IDLE_TTL_S = 2.0  # drop idle connections before the server's keep-alive timeout (uvicorn: 5 s)
TICK_S = 0.1  # timeout sweep and progress period
WARM_CONNECTIONS, WARM_TIMEOUT_S = 4, 2.0  # opened before the clock starts
_HEADER = b"inference-header-content-length"
_UNSENT, _WAITING, _CONNECTING, _IN_FLIGHT = 0, 1, 2, 3


@dataclass(frozen=True)
class Percentiles:
    """Summary of a sample in milliseconds (NaN when the sample is empty)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    count: int

    @classmethod
    def of(cls, values_ms: np.ndarray) -> Percentiles:
        v = np.asarray(values_ms, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        p50, p90, p99 = np.percentile(v, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(v.max()), int(v.size))


@dataclass(frozen=True)
class LoadResult:
    """One run: a record per scheduled request (in request order) and how well the sender kept
    to the schedule (`send_lag`: sent_s - scheduled_s of every attempted request)."""

    records: tuple[RequestRecord, ...]
    elapsed_s: float
    send_lag: Percentiles
    started_unix_s: float = math.nan  # wall-clock time of the run's t = 0 (aligns other logs)

    @property
    def answered(self) -> int:
        return sum(r.status == 200 for r in self.records)

    @property
    def on_time_fraction(self) -> float:
        """On-time answers over all scheduled requests (failures count as late)."""
        return sum(r.on_time for r in self.records) / max(1, len(self.records))

    def latency(self) -> Percentiles:
        """Client-measured latency (completed_s - sent_s) of answered requests."""
        return Percentiles.of(np.array([r.latency_ms for r in self.records if r.status == 200]))


@dataclass(frozen=True)
class Target:
    """Where the server listens: `http://HOST:PORT[/prefix]` or `HOST:PORT` (as tritonclient)."""

    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise GearshiftError(f"server URL {url!r} must be http://HOST:PORT or HOST:PORT")
        try:
            port = parts.port or 80
        except ValueError:
            raise GearshiftError(f"server URL {url!r} has an invalid port") from None
        return cls(parts.hostname, port, parts.path.rstrip("/"))

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{self.prefix}{path}"


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying at most one request at a time."""

    def __init__(self, run: _Run) -> None:
        self.run, self.request, self.idle_since = run, -1, 0.0
        self.counted = False  # True from connect until lost: counted in the run's `conns`
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None  # an asyncio.Transport (uvloop's is not a subclass)
        self.header_length: int | None = None
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.run.lost(self, f"malformed HTTP response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self, f"connection closed before the answer ({exc or 'by the server'})")

    def on_message_begin(self) -> None:
        self.header_length, self.chunks = None, []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == _HEADER and value.isdigit():
            self.header_length = int(value)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.run.answered(self, self.parser.get_status_code(), body, self.header_length,
                          self.parser.should_keep_alive())


class _Run:
    """The mutable state of one run; only `run_open_loop` creates one."""

    def __init__(self, target: Target, model: str, arrivals: list[float],
                 payloads: list[Payload], deadline_ms: float, timeout_s: float,
                 max_connections: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.target, self.arrivals, self.payloads = target, arrivals, payloads
        self.deadline_ms, self.timeout_s, self.max_connections = deadline_ms, timeout_s, max_connections
        path = f"{target.prefix}/v2/models/{model}/infer"
        host = f"[{target.host}]" if ":" in target.host else target.host
        self.heads = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{target.port}\r\n"
                       f"{_content_headers(p)}"
                       f"Content-Length: {len(p.body)}\r\n\r\n").encode() for p in payloads]
        n = len(arrivals)
        self.records: list[RequestRecord | None] = [None] * n
        self.sent, self.state = [math.nan] * n, bytearray(n)
        self.idle: deque[_Conn] = deque()
        self.busy: set[_Conn] = set()
        self.waiting: deque[int] = deque()
        self.connecting: set[asyncio.Task[None]] = set()
        self.conns = self.done_count = self.sent_count = 0
        self.closed = False
        self.finished = self.loop.create_future()
        self.t0 = time.perf_counter()
        self.t0_unix_s = time.time()

    def now(self) -> float:
        """Seconds since the run's start (not loop.time(): uvloop's has 1 ms resolution)."""
        return time.perf_counter() - self.t0

    async def warm(self, count: int) -> None:
        """Open up to `count` idle connections, then restart the clock; failures are ignored
        (each request then tries, and records, its own connection)."""
        t, limit = self.target, min(self.timeout_s, WARM_TIMEOUT_S)
        opened = await asyncio.gather(*(asyncio.wait_for(
            self.loop.create_connection(lambda: _Conn(self), t.host, t.port), limit)
            for _ in range(count)), return_exceptions=True)
        for result in opened:
            if isinstance(result, tuple) and not result[0].is_closing():
                result[1].counted = True
                self.conns += 1
                self.idle.append(result[1])
        self.t0 = time.perf_counter()
        self.t0_unix_s = time.time()

    async def schedule(self) -> None:
        arr, n, i = self.arrivals, len(self.arrivals), 0
        while i < n:
            delay = arr[i] - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.now()
            while i < n and arr[i] <= now:
                self.dispatch(i)
                i += 1

    def dispatch(self, i: int) -> None:
        """Send request i on an idle connection, a new one, or queue it for the next free one."""
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                self.write(conn, i)
                return
        if self.conns < self.max_connections:
            self.conns += 1
            self.state[i], self.sent[i] = _CONNECTING, self.now()
            task = self.loop.create_task(self.connect(i))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)
        else:
            self.state[i] = _WAITING
            self.waiting.append(i)

    async def connect(self, i: int) -> None:
        t = self.target
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Conn(self), t.host, t.port), self.timeout_s)
        except OSError as exc:  # TimeoutError included
            self.conns -= 1
            why = str(exc) or f"no connection within {self.timeout_s:g} s"
            self.fail(i, f"connection to {t.host}:{t.port} failed: {why}")
            return
        conn.counted = True
        if self.closed:  # the run ended while connecting; its record is already written
            self.lost(conn, "run ended")
        else:
            self.write(conn, i)

    def write(self, conn: _Conn, i: int) -> None:
        k = i % len(self.payloads)
        conn.request, self.state[i], self.sent[i] = i, _IN_FLIGHT, self.now()
        self.sent_count += 1
        self.busy.add(conn)
        conn.transport.writelines((self.heads[k], self.payloads[k].body))

    def release(self, conn: _Conn) -> None:
        if self.waiting:
            self.write(conn, self.waiting.popleft())
        else:
            conn.idle_since = self.now()
            self.idle.append(conn)

    def answered(self, conn: _Conn, status: int, body: bytes, header_length: int | None,
                 keep_alive: bool) -> None:
        i, conn.request = conn.request, -1
        self.busy.discard(conn)
        if i >= 0:
            label = self.payloads[i % len(self.payloads)].label
            self.finish(i, status, parse_answer(status, body, header_length, label))
        if keep_alive:
            self.release(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def lost(self, conn: _Conn, why: str) -> None:
        """The connection is unusable: fail its request, forget it, close it."""
        i, conn.request = conn.request, -1
        if i >= 0:
            self.fail(i, why)
        if conn.counted:
            conn.counted = False
            self.conns -= 1
        self.busy.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.transport is not None:
            conn.transport.abort()

    def fail(self, i: int, why: str) -> None:
        self.finish(i, 0, Answer(error=why))

    def finish(self, i: int, status: int, a: Answer) -> None:
        if self.records[i] is not None:  # cannot happen: each path clears its slot first
            return
        done_s, sent_s = self.now(), self.sent[i]
        on_time = status == 200 and not a.error and (done_s - sent_s) * 1000 <= self.deadline_ms
        self.records[i] = RequestRecord(
            i, self.arrivals[i], sent_s, done_s, status, a.variant, a.queue_ms, a.service_ms,
            self.deadline_ms, on_time, a.correct, a.error, a.served_as)
        self.done_count += 1
        if self.done_count == len(self.records) and not self.finished.done():
            self.finished.set_result(None)

    def sweep(self) -> None:
        """Fail requests in flight, or waiting for a connection, longer than `timeout_s`."""
        now, limit = self.now(), self.timeout_s
        for conn in [c for c in self.busy if now - self.sent[c.request] > limit]:
            self.lost(conn, f"no answer within {limit:g} s (timeout_s)")
        while self.waiting and now - self.arrivals[self.waiting[0]] > limit:
            self.fail(self.waiting.popleft(), f"never sent: all {self.max_connections} "
                      f"connections were busy for {limit:g} s")
        while self.idle and now - self.idle[0].idle_since > IDLE_TTL_S:
            self.lost(self.idle[0], "idle")

    def close(self) -> None:
        """End of run: fail whatever is left, close every connection."""
        self.closed = True
        reasons = {_UNSENT: "never sent: the run ended first",
                   _WAITING: "never sent: no free connection before the run ended",
                   _CONNECTING: "no connection before the run ended",
                   _IN_FLIGHT: "no answer before the run ended"}
        for task in self.connecting:
            task.cancel()
        for i, rec in enumerate(self.records):
            if rec is None:
                self.fail(i, reasons[self.state[i]])
        for conn in [*self.busy, *self.idle]:
            conn.request = -1
            self.lost(conn, "run ended")


def _content_headers(p: Payload) -> str:
    """A body with binary tensors after its JSON header says where the header ends; an all-JSON
    body (header as long as the body) is plain `application/json`, as every KServe V2 server
    takes it."""
    if p.header_length >= len(p.body):
        return "Content-Type: application/json\r\n"
    return ("Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {p.header_length}\r\n")


async def run_open_loop(url: str, model: str, arrivals_s: np.ndarray, payloads: list[Payload],
                        deadline_ms: float, *, timeout_s: float, max_connections: int = 256,
                        progress: Progress | None = None) -> LoadResult:
    """Send request i at `arrivals_s[i]` s after the start (body `payloads[i % len(payloads)]`)
    to `url`'s `/v2/models/{model}/infer`; `on_time` means answered (200) within `deadline_ms`
    of being sent. Returns once every request is recorded, at most `timeout_s` s after the last
    scheduled time."""
    arrivals = np.asarray(arrivals_s, dtype=float)
    if arrivals.ndim != 1 or not np.all(np.isfinite(arrivals)) or np.any(np.diff(arrivals) < 0) \
            or (arrivals.size and arrivals[0] < 0):
        raise ValueError("arrivals_s must be a sorted 1-D array of finite times >= 0 s")
    if not payloads or not timeout_s > 0 or not deadline_ms > 0 or max_connections < 1:
        raise ValueError("need payloads, timeout_s > 0, deadline_ms > 0, max_connections >= 1")
    with quieter_collection():  # a full pass would hold the sends and the clock
        return await _run_open_loop(url, model, arrivals, payloads, deadline_ms, timeout_s,
                                    max_connections, progress)


async def _run_open_loop(url: str, model: str, arrivals: np.ndarray, payloads: list[Payload],
                         deadline_ms: float, timeout_s: float, max_connections: int,
                         progress: Progress | None) -> LoadResult:
    run = _Run(Target.parse(url), model, arrivals.tolist(), payloads, deadline_ms, timeout_s,
               max_connections)
    if not run.records:
        run.finished.set_result(None)
    await run.warm(min(WARM_CONNECTIONS, max_connections, len(arrivals)))
    tasks = [asyncio.create_task(run.schedule()), asyncio.create_task(_tick(run, progress))]
    end_s = (arrivals[-1] if arrivals.size else 0.0) + timeout_s
    try:
        await _wait_end(run, tasks, end_s)
    finally:
        for task in tasks:
            task.cancel()
        run.close()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    elapsed = run.now()
    if progress is not None:
        progress(run.done_count, len(run.records), "done")
    records = tuple(r for r in run.records if r is not None)
    lag_ms = (np.array([r.sent_s for r in records]) - arrivals) * 1000.0
    return LoadResult(records, elapsed, Percentiles.of(lag_ms), run.t0_unix_s)


async def _wait_end(run: _Run, tasks: list[asyncio.Task[None]], end_s: float) -> None:
    """Until every request is recorded, `end_s` (run clock) passes, or a task fails."""
    pending: set[asyncio.Future[None]] = {*tasks, run.finished}
    while not run.finished.done() and run.now() < end_s:
        done, pending = await asyncio.wait(pending, timeout=end_s - run.now(),
                                           return_when=asyncio.FIRST_COMPLETED)
        if any(not f.cancelled() and f.exception() is not None for f in done):
            return


async def _tick(run: _Run, progress: Progress | None) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        run.sweep()
        if progress is not None:
            progress(run.done_count, len(run.records),
                     f"sent {run.sent_count}, in flight {len(run.busy)}, "
                     f"waiting {len(run.waiting)}, connections {run.conns}")
