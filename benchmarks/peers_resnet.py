"""A real model through each system: ResNet-18 served over KServe V2 REST by gearshift and the
peers, against raw in-process ONNX Runtime on the same cores, and each system's effective
capacity (the highest load at which >= 99 % of requests are answered within the deadline,
the convention of Loki and Nexus).

Systems, each with ResNet-18 (batch 1, 3 x 224 x 224) on 2 cores at R x T (2x1 and 1x2):
gearshift (`gearshift serve`, a static policy; binary tensors, its clients' default, and JSON),
the bare Starlette floor (one process, JSON; R x T as one session of T threads), Ray Serve (R
replicas of T threads, JSON) and MLServer (R workers, T threads each, JSON: its REST server
takes no binary tensors). Served throughput: closed loop, 2 requests per replica outstanding,
`--seconds`; raw: R threads in one process, each with its own T-thread session, pinned
(`bench_pool.raw_throughput`). Effective capacity: open-loop Poisson at each of `--rates`,
`--seconds` each, on time = answered within `--deadline-ms` at the client. Systems take turns
(A/B interleaved) within each measurement. Runs itself inside a loopback-only network
namespace (needs root; Ray binds beyond loopback); peers' venvs from `peers.py`.

    .venv/bin/python benchmarks/peers_resnet.py --pool out/bench/zoo/resnet/pool.yaml
        [--peers-out out/bench/peers] [--allocations 2x1,1x2] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx
import numpy as np

from gearshift.experiment.live import free_port
from gearshift.types import Allocation

CAPACITY_ON_TIME = 0.99
"""A system's effective capacity: the last offered rate, before the first that falls short,
at which it answers at least this fraction of the requests within the deadline."""


class _Answers(asyncio.Protocol):
    """One keep-alive connection of `closed_loop`: sends a request, waits for its answer."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"connection closed: {exc}"))

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    async def ask(self, request: bytes) -> int:
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(request)
        return await self.done


async def closed_loop(url: str, model: str, body: bytes, headers: dict[str, str],
                      clients: int, seconds: float) -> float:
    """Answers per second with `clients` requests outstanding, after a 2 s warm-up. A raw
    HTTP/1.1 client (httptools parses the answers, chunked or not), one keep-alive connection
    per outstanding request: on the same 2 cores as the server, httpx's own CPU per request
    took 0.03-0.07 of ResNet-18's served / raw from every system at 1x2."""
    u = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {u.netloc}\r\n"
               f"Content-Length: {len(body)}\r\n{head}\r\n").encode() + body
    loop = asyncio.get_running_loop()

    async def client(until: float) -> int:
        transport, conn = await loop.create_connection(_Answers, u.hostname, u.port)
        n = 0
        try:
            while time.perf_counter() < until:
                n += await conn.ask(request) == 200
        finally:
            transport.close()
        return n

    await asyncio.gather(*(client(time.perf_counter() + 2.0) for _ in range(clients)))
    t0 = time.perf_counter()
    done = await asyncio.gather(*(client(t0 + seconds) for _ in range(clients)))
    return sum(done) / (time.perf_counter() - t0)


async def on_time_at(url: str, model: str, body: bytes, headers: dict[str, str],
                     rate: float, seconds: float, deadline_ms: float, seed: int) -> float:
    """Fraction of Poisson arrivals at `rate` answered 200 within `deadline_ms`."""
    answers = await answers_at(url, model, body, headers, rate, seconds, deadline_ms, seed)
    return sum(on_time for on_time, _ in answers) / max(1, len(answers))


async def answers_at(url: str, model: str, body: bytes, headers: dict[str, str],
                     rate: float, seconds: float, deadline_ms: float, seed: int
                     ) -> list[tuple[bool, str]]:
    """Per Poisson arrival at `rate`: (answered 200 within `deadline_ms`, the variant that
    answered, as gearshift names it in the answer's parameters; '' if none). The answers are
    read once the run is over: the client shares the cores with the server."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, int(rate * seconds * 1.5))
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < seconds]
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        async def one(at: float, t0: float) -> tuple[bool, httpx.Response | None]:
            await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
            sent = time.perf_counter()
            try:
                r = await http.post(f"{url}/v2/models/{model}/infer", content=body,
                                    headers=headers)
            except httpx.HTTPError:
                return False, None
            in_time = (time.perf_counter() - sent) * 1000 <= deadline_ms
            return r.status_code == 200 and in_time, r

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(at, t0) for at in arrivals))
    return [(ok, answered_by(r) if r is not None else "") for ok, r in done]


def answered_by(r: httpx.Response) -> str:
    """The variant a gearshift answer names (`parameters.variant` of its JSON part); ''."""
    if r.status_code != 200:
        return ""
    n = r.headers.get("inference-header-content-length")
    try:
        head = json.loads(r.content[:int(n)] if n else r.content)
    except ValueError:
        return ""
    params = head.get("parameters") if isinstance(head, dict) else None
    return str(params.get("variant", "")) if isinstance(params, dict) else ""


def switching_capacity(a: argparse.Namespace, rates: list[float], body: bytes,
                       headers: dict[str, str]) -> dict[str, object]:
    """gearshift switching (`table`, the experiment's plan and pool) at each of `rates`:
    on-time fraction and effective accuracy (on time x the answering variant's declared
    accuracy), and the effective capacity as for the static systems."""
    from peers import start_gearshift, stop, wait_ready, why_not

    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(a.switching_pool)
    # `gearshift serve`'s default controller is `table`
    proc, url, _ = start_gearshift(a.switching_pool, a.switching / "policy.json")
    try:
        if not wait_ready(url, proc, 240):  # type: ignore[arg-type]
            return {"not_measured": why_not(proc)}  # type: ignore[arg-type]
        by_rate: dict[str, dict[str, float]] = {}
        capacity, failed = 0.0, False  # the last rate before the first failure
        for rate in rates:
            answers = asyncio.run(answers_at(url, spec.application, body, headers, rate,
                                             a.seconds, a.deadline_ms, seed=int(rate)))
            on_time = sum(ok for ok, _ in answers) / max(1, len(answers))
            eff = sum(spec.accuracy_of(v) for ok, v in answers if ok) / max(1, len(answers))
            by_rate[f"{rate:g}"] = {"on_time": on_time, "effective_accuracy": eff}
            failed = failed or on_time < CAPACITY_ON_TIME
            capacity = capacity if failed else rate
        return {"effective_capacity_rps": capacity, "by_rate": by_rate}
    finally:
        stop(proc)  # type: ignore[arg-type]


def bodies(pool: Path, deadline_ms: float) -> dict[str, tuple[bytes, dict[str, str]]]:
    """A binary (KServe V2 binary tensor extension, as gearshift's client sends) and a JSON
    body (as `peers.py` sends) of one random image, with their headers."""
    from peers import json_payload

    from gearshift.loadgen.payloads import random_payloads
    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(pool)
    binary = random_payloads(spec, 1, seed=0, deadline_ms=deadline_ms)[0]
    text = json_payload(spec.model_path("resnet18"))
    return {"binary": (binary.body, {"Inference-Header-Content-Length": str(binary.header_length),
                                     "Content-Type": "application/octet-stream"}),
            "json": (text.body, {"Content-Type": "application/json"})}


def start_all(pool: Path, alloc: Allocation, pythons: dict[str, Path], tmp: Path
              ) -> tuple[list[tuple[str, str, str, str, object]], dict[str, str]]:
    """[(name, url, model, body kind, process)] ready, and why the others are not."""
    from bench_frontend import static_policy
    from peers import APPS, start, start_gearshift, start_mlserver, stop, wait_ready, why_not

    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(pool)
    model = str(spec.model_path("resnet18"))
    r, t = str(alloc.replicas), str(alloc.threads)
    policy = static_policy(pool, "resnet18", alloc.replicas, alloc.threads, 2,
                           tmp / f"policy-{alloc}.json")
    proc, url, app = start_gearshift(pool, policy)
    launches = [("gearshift", url, app, "binary", proc)]
    launches.append(("gearshift (JSON)", url, app, "json", proc))
    port = free_port()
    launches.append(("starlette (floor)", f"http://127.0.0.1:{port}", "model", "json",
                     start([sys.executable, "floor_app.py", model, str(port), t], cwd=APPS)))
    if "ray" in pythons:
        port = free_port()
        launches.append(("ray serve", f"http://127.0.0.1:{port}", "model", "json",
                         start([str(pythons["ray"]), "ray_app.py", model, str(port), r, t],
                               cwd=APPS)))
    if "mlserver" in pythons:
        proc, url = start_mlserver(pythons["mlserver"], Path(model), tmp, alloc.replicas,
                                   alloc.threads)
        launches.append(("mlserver", url, "model", "json", proc))
    ready, missing = [], {}
    for name, url, app_name, kind, p in launches:
        if wait_ready(url, p, 240):  # type: ignore[arg-type]
            ready.append((name, url, app_name, kind, p))
        else:
            missing[name] = why_not(p)  # type: ignore[arg-type]
            stop(p)  # type: ignore[arg-type]
    return ready, missing


def run_inside(a: argparse.Namespace, pythons: dict[str, Path]) -> None:
    from bench_pool import raw_throughput
    from peers import stop

    from gearshift.zoo.spec import load_pool_spec

    spec = load_pool_spec(a.pool)
    kinds = bodies(a.pool, a.deadline_ms)
    rates = [float(x) for x in a.rates.split(",")]
    out: dict[str, object] = {}
    for alloc in (Allocation.parse(s) for s in a.allocations.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            systems, missing = start_all(a.pool, alloc, pythons, Path(tmp))
            try:
                raw = raw_throughput(spec, "resnet18", alloc, a.seconds, False)
                served: dict[str, list[float]] = {s[0]: [] for s in systems}
                for round_ in range(a.rounds):
                    order = systems if round_ % 2 == 0 else systems[::-1]
                    for name, url, model, kind, _ in order:
                        body, headers = kinds[kind]
                        served[name].append(asyncio.run(closed_loop(
                            url, model, body, headers, 2 * alloc.replicas, a.seconds)))
                raw = (raw + raw_throughput(spec, "resnet18", alloc, a.seconds, False)) / 2
                capacity: dict[str, float] = {s[0]: 0.0 for s in systems}
                failed: set[str] = set()  # the capacity is the last rate before a failure
                for rate in rates:
                    for name, url, model, kind, _ in systems:
                        if name in failed:
                            continue
                        body, headers = kinds[kind]
                        ok = asyncio.run(on_time_at(url, model, body, headers, rate, a.seconds,
                                                    a.deadline_ms, seed=int(rate)))
                        if ok >= CAPACITY_ON_TIME:
                            capacity[name] = rate
                        else:
                            failed.add(name)
            finally:
                for p in {id(s[4]): s[4] for s in systems}.values():
                    stop(p)  # type: ignore[arg-type]
        rows = {name: {"served_rps": float(np.median(v)), "served_over_raw":
                       float(np.median(v)) / raw, "effective_capacity_rps": capacity[name]}
                for name, v in served.items()}
        out[str(alloc)] = {"raw_rps": raw, "systems": rows, "not_measured": missing}
        print(f"\nResNet-18 at {alloc}: raw in-process ONNX Runtime {raw:.1f} req/s")
        print(f"| system | body | served req/s | served / raw | effective capacity req/s "
              f"(>= 99 % within {a.deadline_ms:g} ms) |")
        print("|---|---|---|---|---|")
        for name, url, model, kind, _ in systems:
            r = rows[name]
            print(f"| {name} | {kind} | {r['served_rps']:.1f} | {r['served_over_raw']:.2f} | "
                  f"{r['effective_capacity_rps']:g} |")
        for name, why in missing.items():
            print(f"{name}: not measured ({why})")
    if a.switching is not None:
        body, headers = kinds["binary"]
        result = switching_capacity(a, rates, body, headers)
        out["switching"] = result
        print("\ngearshift switching (`table`, the demo's plan, its whole pool on 2 cores; "
              "binary), open loop:")
        if "not_measured" in result:
            print(f"not measured ({result['not_measured']})")
        else:
            for rate, r in result["by_rate"].items():  # type: ignore[union-attr]
                print(f"  {rate} req/s: on time {r['on_time']:.3f}, effective accuracy "
                      f"{r['effective_accuracy']:.3f}")
            print(f"  effective capacity {result['effective_capacity_rps']:g} req/s "
                  f"(>= 99 % within {a.deadline_ms:g} ms)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, required=True, help="a ResNet pool.yaml")
    ap.add_argument("--peers-out", type=Path, default=Path("out/bench/peers"),
                    help="where peers.py installed the peers' venvs")
    ap.add_argument("--allocations", default="2x1,1x2")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rates", default="20,30,40,45,50,55", help="req/s for the capacity")
    ap.add_argument("--deadline-ms", type=float, default=300.0)
    ap.add_argument("--skip", default="", help="peers not to run, commas")
    ap.add_argument("--switching", type=Path,
                    help="an experiment's folder (make demo): also gearshift switching over "
                         "its whole pool, with its plan, at each of --rates")
    ap.add_argument("--switching-pool", type=Path, help="that experiment's pool.yaml")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.switching is not None:
        if a.switching_pool is None:
            ap.error("--switching needs --switching-pool (the experiment's pool.yaml)")
        a.switching, a.switching_pool = a.switching.resolve(), a.switching_pool.resolve()
    from peers import NETNS_ENV, PEERS, in_namespace  # run as a script, beside it

    a.pool = a.pool.resolve()
    skip = {s for s in a.skip.split(",") if s}
    venvs = a.peers_out.resolve() / "venvs"
    pythons = {n: venvs / n / "bin" / "python" for n in PEERS if n not in skip
               and (venvs / n / "bin" / "python").is_file()}
    if os.environ.get(NETNS_ENV) is None:
        raise SystemExit(in_namespace([str(Path(__file__).resolve()), *sys.argv[1:]]))
    run_inside(a, pythons)


if __name__ == "__main__":
    main()
