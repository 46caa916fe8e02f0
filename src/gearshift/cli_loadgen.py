"""`gearshift loadgen`: drive a server with an open-loop workload and record every request.

Registered by `gearshift.cli` as a command; this module holds only the command function and its
helpers, so the main CLI module stays small.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from gearshift.errors import GearshiftError
from gearshift.loadgen.client import LoadResult, Target, run_open_loop
from gearshift.loadgen.payloads import ModelInfo, model_info, random_payloads
from gearshift.loadgen.workload import parse_workload
from gearshift.progress import step_progress
from gearshift.records import write_records

PAYLOADS = 64  # distinct random bodies, cycled
WORKLOAD_HELP = ("arrival process: poisson:RATE, mmpp, mmpp:FILE.yaml, step:R1,R2,...@DWELL, "
                 "spike:BASE,PEAK,AT,LEN, trace:FILE[,mean=RATE][,start=S], "
                 "timestamps:FILE[,speed=X][,start=S] or arrivals:FILE (rates in req/s, times in s)")
T = TypeVar("T")
console = Console(stderr=True)
out = Console()


def loadgen(
    url: Annotated[str, typer.Argument(help="server address: http://HOST:PORT or HOST:PORT")],
    workload: Annotated[str, typer.Option(help=WORKLOAD_HELP)],
    duration: Annotated[float, typer.Option(help="seconds of arrivals to send")],
    out_path: Annotated[Path, typer.Option("--out", help="records CSV to write")],
    model: Annotated[str | None, typer.Option(
        help="model to call; default: the pool spec's application")] = None,
    pool: Annotated[Path | None, typer.Option(
        help="pool.yaml giving the input; default: the server's model metadata")] = None,
    deadline_ms: Annotated[float | None, typer.Option(
        help="per-request deadline in ms; default: the pool's (or the server's) deadline")] = None,
    seed: Annotated[int, typer.Option(help="seed of the arrivals and the random inputs")] = 0,
    capacity_rps: Annotated[float | None, typer.Option(
        help="saturation rate in req/s of the fastest variant (needed by the default mmpp)")
    ] = None,
    timeout_s: Annotated[float, typer.Option(
        help="seconds to wait for an answer; the run ends at most this long after the last send")
    ] = 30.0,
    max_connections: Annotated[int, typer.Option(help="concurrent HTTP connections at most")] = 256,
) -> None:
    """Send an open-loop workload to a KServe V2 server (each request at its scheduled time,
    whatever the answers) and write one record per request."""
    try:
        if not duration > 0 or not math.isfinite(duration):
            raise GearshiftError(f"--duration must be a finite number of seconds > 0, got {duration}")
        arrivals = parse_workload(workload).arrivals(duration, seed, capacity_rps)
        model, info = _model_and_input(url, model, pool)
        deadline = deadline_ms or info.deadline_ms
        if deadline is None:
            raise GearshiftError("the server does not state a deadline; pass --deadline-ms")
        payloads = random_payloads(info.input, PAYLOADS, seed, deadline)
        console.print(f"sending {len(arrivals)} requests over {duration:g} s to {url} "
                      f"(model {model}, deadline {deadline:g} ms)")
        with step_progress(console, "load") as progress:
            result = _run(run_open_loop(url, model, arrivals, payloads, deadline,
                                        timeout_s=timeout_s, max_connections=max_connections,
                                        progress=progress))
    except (GearshiftError, ValueError) as exc:
        message = exc.message if isinstance(exc, GearshiftError) else str(exc)
        console.print(f"[bold red]error:[/] {message}")
        raise typer.Exit(code=2) from None
    write_records(out_path, result.records)
    _summary(result, out_path)


def _model_and_input(url: str, model: str | None, pool: Path | None) -> tuple[str, ModelInfo]:
    """The model name and its input: from the pool spec, else from the server's metadata."""
    if pool is not None:
        from gearshift.zoo.spec import load_pool_spec

        spec = load_pool_spec(pool, check_models=False)
        return model or spec.application, ModelInfo(spec.input, spec.deadline_ms)
    if model is None:
        raise GearshiftError("name the model with --model, or give --pool POOL.yaml")
    return model, _fetch_info(url, model)


def _fetch_info(url: str, model: str) -> ModelInfo:
    import httpx

    where = Target.parse(url).url(f"/v2/models/{model}")
    try:
        resp = httpx.get(where, timeout=10.0)
        meta = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise GearshiftError(f"cannot read model metadata at {where} ({exc}); is the server "
                             "running? Or give the input with --pool POOL.yaml") from None
    if resp.status_code != 200:
        detail = meta.get("error", meta) if isinstance(meta, dict) else meta
        raise GearshiftError(f"model metadata at {where}: HTTP {resp.status_code}: {detail}")
    try:
        return model_info(meta)
    except ValueError as exc:
        raise GearshiftError(f"{where}: {exc}; give the input with --pool POOL.yaml") from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (lower send lag), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _summary(result: LoadResult, path: Path) -> None:
    n = len(result.records)
    lat, lag = result.latency(), result.send_lag
    failed = n - result.answered
    out.print(f"records written to [bold]{path}[/]")
    out.print(f"requests {n}, answered {result.answered}, failed {failed}, on time "
              f"{result.on_time_fraction:.1%}, in {result.elapsed_s:.1f} s")
    out.print(f"latency p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms; "
              f"send lag p50 {lag.p50_ms:.2f} ms, p99 {lag.p99_ms:.2f} ms")
    errors: dict[str, int] = {}
    for r in result.records:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    for text, count in sorted(errors.items(), key=lambda kv: -kv[1])[:3]:
        out.print(f"  {count} x {text}")
