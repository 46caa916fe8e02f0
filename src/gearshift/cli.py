"""The `gearshift` command line: thin commands that build settings and call the library."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from gearshift import heap
from gearshift.control.factory import OPTION_HELP, POLICY_NAMES
from gearshift.errors import GearshiftError, SpecError
from gearshift.planning.settings import DEFAULT_PLAN
from gearshift.policy import TABLE
from gearshift.progress import StepCallback
from gearshift.stopping import exit_on_sigterm
from gearshift.types import Allocation, Decision, allocations_for

if TYPE_CHECKING:
    from gearshift.dispatch import PathOverhead
    from gearshift.engine.check import CheckRow
    from gearshift.serving.server import OverheadSource
    from gearshift.zoo.spec import PoolSpec

HELP = (
    "gearshift serves a pool of model variants on a fixed set of CPU cores and shifts, every "
    "period, to the variant and replicas x threads with the best effective accuracy."
)
app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
zoo_app = typer.Typer(no_args_is_help=True, help="Build and prepare model pools.")
pool_app = typer.Typer(no_args_is_help=True, help="Inspect and check a model pool.")
app.add_typer(zoo_app, name="zoo")
app.add_typer(pool_app, name="pool")
console = Console(stderr=True)
out = Console()


def _fail(exc: GearshiftError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc.message}")
    return typer.Exit(code=2)


def _speeds(text: str) -> tuple[float, ...]:
    """`--speeds`: numbers > 1, ascending, by commas ('' for none)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--speeds must be numbers > 1, ascending, separated by commas "
                         f"('' for none); got {text!r}") from None


def _cores_default() -> int:
    return len(os.sched_getaffinity(0))


@zoo_app.command("build")
def zoo_build(
    family: Annotated[str, typer.Argument(
        help="resnet (ResNet-18..152), resnet-int8 (those and their int8 copies, pruned to "
             "the Pareto front), resnet-mixed (also a bf16 run of each; the openvino extra), "
             "fashion (trained Fashion-MNIST CNNs) or tiny (test MLPs)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the ONNX files and pool.yaml")],
    weights: Annotated[
        Path | None, typer.Option(help="resnet: folder of torchvision-format state dicts")
    ] = None,
    image_size: Annotated[int, typer.Option(help="resnet: input height and width, pixels")] = 224,
    metric: Annotated[str, typer.Option(help="resnet: declared accuracy, top1 or top5")] = "top1",
    retrain: Annotated[bool, typer.Option(
        help="fashion: train from scratch (tens of minutes) instead of the shipped models")
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(
        help="fashion: folder of the Fashion-MNIST IDX files (default: Debian's)")] = None,
) -> None:
    """Build a family of variants as ONNX files plus a validated pool.yaml (finished files are
    reused)."""
    from gearshift.progress import step_progress

    try:
        with step_progress(console, f"building {family}") as progress:
            path = _build(family, out_dir, weights, image_size, metric, retrain, data_dir,
                          progress)
    except GearshiftError as exc:
        raise _fail(exc) from None
    out.print(f"pool spec written to [bold]{path}[/]")


def _build(family: str, out_dir: Path, weights: Path | None, image_size: int, metric: str,
           retrain: bool, data_dir: Path | None, progress: StepCallback) -> Path:
    if family == "tiny":
        from gearshift.zoo.tiny import build_tiny_pool

        return build_tiny_pool(out_dir)
    if family == "resnet":
        from gearshift.zoo.resnet import build_resnet_pool

        return build_resnet_pool(out_dir, weights=weights, image_size=image_size,
                                 metric=metric, progress=progress)  # type: ignore[arg-type]
    if family in ("resnet-int8", "resnet-mixed"):
        from gearshift.zoo.mixed import build_mixed_resnet_pool

        return build_mixed_resnet_pool(out_dir, weights=weights, image_size=image_size,
                                       metric=metric, progress=progress,  # type: ignore[arg-type]
                                       bf16=family == "resnet-mixed")
    if family == "fashion":
        from gearshift.data.fashion import DEFAULT_FASHION_DIR
        from gearshift.zoo.fashion import build_fashion_pool

        return build_fashion_pool(out_dir, retrain=retrain, progress=progress,
                                  data_dir=data_dir or DEFAULT_FASHION_DIR)
    raise GearshiftError(f"no family {family!r}: choose resnet, resnet-int8, resnet-mixed, "
                         "fashion, tiny")


def _print_check(title: str, rows: Sequence[CheckRow]) -> None:
    table = Table(title=title)
    for col in ("allocation", "variant", "service ms", "top class", "load s", "replica RSS MB"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for r in rows:
        table.add_row(str(r.allocation), r.variant, f"{r.service_ms:.1f}", str(r.top_class),
                      f"{r.load_s:.2f}", f"{r.rss_mb:.0f}")
    out.print(table)


@pool_app.command("check")
def pool_check(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml")],
    cores: Annotated[int, typer.Option(help="core budget; default: all usable cores")] = 0,
    allocation: Annotated[
        list[str] | None, typer.Option(help="RxT to check (repeatable); default: all for --cores")
    ] = None,
) -> None:
    """Load the pool at each allocation and serve one request from every variant."""
    from gearshift.engine.check import run_check
    from gearshift.zoo.spec import load_pool_spec

    try:
        spec = load_pool_spec(spec_path)
        allocs = [Allocation.parse(a) for a in allocation] if allocation else allocations_for(
            cores or _cores_default()
        )
        with console.status("checking pool") as status:
            rows = run_check(spec, allocs, progress=lambda m: status.update(m))
    except (GearshiftError, ValueError) as exc:
        raise _fail(exc if isinstance(exc, GearshiftError) else GearshiftError(str(exc))) from None
    _print_check(f"{spec.application}: one request per variant and allocation", rows)


@app.command()
def demo(
    pool: Annotated[str, typer.Option(help="resnet (the paper's family), resnet-int8 (with "
                                           "int8 copies), resnet-mixed (int8 and bf16), "
                                           "fashion (labelled) or tiny")
                    ] = "resnet",
    out_dir: Annotated[Path, typer.Option("--out", help="working folder")] = Path("out/demo"),
    duration: Annotated[float, typer.Option(help="seconds of load per policy")] = 40.0,
    workload: Annotated[str, typer.Option(help="workload spec")] = "mmpp:dwell=5",
    seed: Annotated[int, typer.Option(
        help="arrival seed; the default's 40 s path moves between 0.11 and 0.62 x capacity "
             "(Markov levels 1-4 of 0-5)")] = 4,
) -> None:
    """Build the pool (reusing finished files) and run the full experiment on it: every
    policy live and simulated, with a report."""
    from gearshift.cli_experiment import experiment

    zoo_dir = out_dir.parent / "zoo" / pool
    out.print(f"[bold]building the {pool} pool[/] in {zoo_dir}")
    zoo_build(pool, zoo_dir, weights=None, image_size=224, metric="top1", retrain=False,
              data_dir=None)
    out.print(f"[bold]experiment[/]: {workload} (seed {seed}), {duration:g} s per policy")
    # 10 in-process samples: the live calibration replaces them; a 400 s deadline sweep: the
    # live path and nine more of its length (the default 600 s would pass 10 minutes)
    experiment(zoo_dir / "pool.yaml", workload=workload, duration=duration, out_dir=out_dir,
               cache=out_dir.parent / "cache", data="fashion-test" if pool == "fashion" else None,
               samples=10, period_s=0.5, seed=seed, cores=0, deadline_ms=None,
               sweep_seconds=400.0)


@app.command()
def profile(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml")],
    out_path: Annotated[Path, typer.Option("--out", help="profile JSON to write")] = Path(
        "profile.json"
    ),
    cores: Annotated[int, typer.Option(help="core budget; default: all usable cores")] = 0,
    samples: Annotated[int, typer.Option(help="service-time samples per variant and RxT")] = 200,
    quick: Annotated[bool, typer.Option(help="20 samples each: for tests and a first look")] = False,
) -> None:
    """Measure service times and saturation throughput of every variant at every RxT."""
    import asyncio

    from gearshift.profiling.profile import save_profile
    from gearshift.profiling.profiler import ProfileSettings, measure
    from gearshift.progress import step_progress
    from gearshift.zoo.spec import load_pool_spec

    settings = ProfileSettings(cores=cores or _cores_default(), samples=20 if quick else samples,
                               overhead_samples=50 if quick else 200)
    try:
        spec = load_pool_spec(spec_path)
        with step_progress(console, "profiling") as progress:
            prof = asyncio.run(measure(spec, settings, progress))
    except GearshiftError as exc:
        raise _fail(exc) from None
    save_profile(prof, out_path)
    table = Table(title=f"{spec.application} on {prof.machine.cpu_model} ({prof.cores} cores)")
    for col in ("variant", "RxT", "p50 ms", "p99 ms", "throughput req/s"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for e in prof.entries:
        table.add_row(e.variant, str(e.allocation), f"{e.percentile_ms(50):.1f}",
                      f"{e.percentile_ms(99):.1f}", f"{e.throughput_rps:.1f}")
    out.print(table)
    out.print(f"serving-path overhead p50 {float(np.median(prof.overhead_ms)):.2f} ms; "
              f"profile written to [bold]{out_path}[/]")


@app.command()
def plan(
    profile_path: Annotated[Path, typer.Argument(help="profile JSON from `gearshift profile`")],
    deadline_ms: Annotated[float, typer.Option(help="the SLA deadline per request, ms")],
    out_path: Annotated[Path, typer.Option("--out", help="policy table JSON to write")] = Path(
        "policy.json"),
    plot: Annotated[Path | None, typer.Option(help="folder for the characterisation PNGs")] = None,
    points: Annotated[int, typer.Option(help="loads on the grid")] = DEFAULT_PLAN.points,
    sim_seconds: Annotated[float, typer.Option(
        help="simulated seconds per grid point")] = DEFAULT_PLAN.duration_s,
    seed: Annotated[int, typer.Option(help="seed of the simulated arrivals")] = 0,
    fallbacks: Annotated[bool, typer.Option(
        help="plan with lighter variants answering the requests a choice would answer too late "
             "(as the table policy serves); --no-fallbacks: the paper's plan")] = True,
    headroom: Annotated[float, typer.Option(
        help="plan for this fraction of the deadline: a margin for service times that move "
             "between runs")] = DEFAULT_PLAN.headroom,
    period_s: Annotated[float, typer.Option(
        help="the control period the server will run (the rate estimate's noise)")
    ] = DEFAULT_PLAN.period_s,
    speeds: Annotated[str, typer.Option(
        help="how much slower than profiled a host may serve, at which the grid is planned "
             "again (commas; the table controller scores at the speed it measures); '' for "
             "none: a table planned in a fifth of the time")] = ",".join(
        f"{x:g}" for x in DEFAULT_PLAN.speeds),
) -> None:
    """Choose, for every load, the variant and RxT with the best effective accuracy."""
    from gearshift.planning.planner import plan_table
    from gearshift.planning.table import save_policy
    from gearshift.profiling.profile import load_profile
    from gearshift.progress import step_progress

    try:
        slower = _speeds(speeds)
        settings = replace(DEFAULT_PLAN, duration_s=sim_seconds, points=points,
                           headroom=headroom, period_s=period_s, speeds=slower)
    except ValueError as exc:
        raise _fail(SpecError(str(exc))) from None
    try:
        prof = load_profile(profile_path)
        with step_progress(console, "planning") as progress:
            table = plan_table(prof, deadline_ms, settings, fallbacks, seed, progress)
    except GearshiftError as exc:
        raise _fail(exc) from None
    save_policy(table, out_path)
    t = Table(title=f"policy for a {deadline_ms:g} ms deadline ({prof.cores} cores)")
    for col in ("load req/s", "variant", "RxT", "P(on time)", "effective accuracy"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in table.ranges:
        t.add_row(f"{r.min_rps:.1f} - {r.max_rps:.1f}", r.variant, f"{r.replicas}x{r.threads}",
                  f"{r.p_on_time:.3f}", f"{r.effective_accuracy:.3f}")
    out.print(t)
    if plot is not None:
        from gearshift.planning.plots import plot_characterisation

        for path in plot_characterisation(table, prof, plot):
            out.print(f"figure: {path}")
    out.print(f"policy written to [bold]{out_path}[/]")


@app.command()
def serve(
    spec_path: Annotated[Path, typer.Argument(help="pool.yaml")],
    policy: Annotated[Path, typer.Option(help="policy table from `gearshift plan`")],
    profile_path: Annotated[Path | None, typer.Option(
        "--profile", help="profile JSON (queue-aware); default: profile.json beside the policy")
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind; loopback unless told")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    period_s: Annotated[float, typer.Option(help="control period in seconds")] = 0.5,
    controller: Annotated[str, typer.Option(help=POLICY_NAMES)] = TABLE,
    controller_option: Annotated[list[str] | None, typer.Option(help=OPTION_HELP)
    ] = None,
    control_log: Annotated[Path | None, typer.Option(help="JSONL file of every period")] = None,
    control_log_max_bytes: Annotated[int, typer.Option(
        help="size at which the control log is renamed to NAME.1 (replacing it) and "
             "restarted")] = 16 << 20,
    max_queue: Annotated[int, typer.Option(help="requests waiting before 503")] = 1024,
    prewarm: Annotated[str, typer.Option(
        help="RxT to load at start: table (those the controller may choose: the table's ranges "
             "for table:paper, every RxT of the planner's grid for table and queue-aware), all "
             "(every RxT of the cores: switching never loads; one replica's memory per extra "
             "slot), none")
    ] = "table",
    auth_token_file: Annotated[Path | None, typer.Option(
        help="file holding a bearer token (>= 16 characters, mode 600): every endpoint but "
             "/v2/health/live then needs Authorization: Bearer <token>")] = None,
    management: Annotated[str, typer.Option(
        help="PUT /gearshift/controller: open, token (needs --auth-token-file), closed, or "
             "auto (closed unless --host is loopback)")] = "auto",
    allowed_host: Annotated[list[str] | None, typer.Option(
        help="Host header value to answer (repeatable; * for any); default: loopback names "
             "when bound to loopback, else any")] = None,
    max_body_bytes: Annotated[int, typer.Option(
        help="largest request body, before and after decompression")] = 64 << 20,
    body_timeout_s: Annotated[float, typer.Option(
        help="seconds to receive a whole request body (408 after)")] = 30.0,
    max_header_bytes: Annotated[int, typer.Option(
        help="largest request line plus headers (431 beyond)")] = 32 << 10,
    header_timeout_s: Annotated[float, typer.Option(
        help="seconds to receive a request's line and headers")] = 10.0,
    max_connections: Annotated[int, typer.Option(
        help="open connections and requests at once (503 beyond)")] = 2048,
    max_inflight_body_bytes: Annotated[int, typer.Option(
        help="inference request bytes held at once, as received and decompressed, across "
             "requests (503 with Retry-After beyond, before reading more)")] = 512 << 20,
) -> None:
    """Serve the pool over KServe V2 REST, switching variant and RxT every period."""
    import asyncio
    import logging

    from gearshift.control.factory import make_policy, parse_options
    from gearshift.planning.table import load_policy
    from gearshift.policy import Controller
    from gearshift.profiling.profile import load_profile
    from gearshift.serving.access import read_token_file, resolve_access
    from gearshift.serving.server import (
        Server,
        ServerSettings,
        pool_settings,
        prewarm_allocations,
    )
    from gearshift.zoo.spec import load_pool_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        spec = load_pool_spec(spec_path)
        digest = spec.digest()
        table = load_policy(policy, digest)
        profile_path = profile_path or policy.parent / "profile.json"
        prof = load_profile(profile_path, digest) if profile_path.is_file() else None
        options = parse_options(controller_option or [])
        pol, initial = make_policy(controller, table, prof, spec.variant_names(), options)
        token = read_token_file(auth_token_file) if auth_token_file else None
        if management not in ("auto", "open", "token", "closed"):
            raise GearshiftError(f"--management {management!r}: use auto, open, token or closed")
        access = resolve_access(host, token, management,  # type: ignore[arg-type]
                                tuple(allowed_host) if allowed_host else None)
    except GearshiftError as exc:
        raise _fail(exc) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] binding {host}: reachable beyond this machine"
                      f"{'' if token else '; no --auth-token-file: anyone can call it'}; "
                      f"management endpoints {access.management}")
    if table.deadline_ms != spec.deadline_ms:
        console.print(f"note: the controller plans for the table's deadline, "
                      f"{table.deadline_ms:g} ms; a request that names none gets the pool's, "
                      f"{spec.deadline_ms:g} ms")
    try:
        warm = prewarm_allocations(table, controller, prewarm)
    except GearshiftError as exc:
        raise _fail(exc) from None
    pool = pool_settings(prof, max_queue)
    try:
        settings = ServerSettings(
            host=host, port=port, period_s=period_s, control_log=control_log,
            control_log_max_bytes=control_log_max_bytes,
            pool=pool, prewarm=warm, auth_token=token, management=access.management,
            allowed_hosts=access.allowed_hosts or ("*",), max_body_bytes=max_body_bytes,
            body_timeout_s=body_timeout_s, max_header_bytes=max_header_bytes,
            header_timeout_s=header_timeout_s, max_connections=max_connections,
            max_inflight_body_bytes=max_inflight_body_bytes)
    except ValueError as exc:
        raise _fail(SpecError(str(exc))) from None
    server = Server(spec, Controller(pol, keep_log=False), initial, settings,
                    _policies_from_files(spec, policy, profile_path, options, digest),
                    _overhead_from_file(profile_path, digest))
    console.print(f"serving {spec.application} ({', '.join(spec.variant_names())}) on "
                  f"http://{host}:{port} with the {pol.name} controller; starting at "
                  f"{initial.variant} {initial.allocation}")
    heap.settle()  # what is built by now lives as long as the server: out of the collector's way
    asyncio.run(server.serve())
    if server.start_error:
        raise _fail(GearshiftError(server.start_error))


def _policies_from_files(spec: PoolSpec, policy: Path, profile: Path,
                         options: dict[str, float], digest: str
                         ) -> Callable[[str], tuple[Any, Decision]]:
    """Builds a policy by name for `PUT /gearshift/controller`, reading the policy table and
    profile again each time: a table re-planned on disk is taken up without a restart. Both
    must match `digest`, the pool's as loaded at start (the replicas serve those files; hashing
    every model file again per call read hundreds of MB for a ResNet pool). The command line's
    controller options go to a policy of the same kind (the table's to queue-aware, and back);
    another kind starts from its defaults. The policy judges the backlog against the deadline
    the table was planned for (`gearshift experiment --deadline-ms` plans for its own), not
    the pool's default for requests that name none."""
    from gearshift.control.factory import make_policy, options_for
    from gearshift.planning.table import load_policy
    from gearshift.profiling.profile import load_profile

    def build(name: str) -> tuple[Any, Decision]:
        prof = load_profile(profile, digest) if profile.is_file() else None
        table = load_policy(policy, digest)
        return make_policy(name, table, prof, spec.variant_names(),
                           options_for(name, options))

    return build


def _overhead_from_file(profile: Path, digest: str) -> OverheadSource:
    """Reads the dispatch rule's overhead from the profile on disk at each controller switch
    (`gearshift experiment` calibrates the profile through the running server)."""
    from gearshift.profiling.profile import load_profile
    from gearshift.serving.server import path_overheads

    def read() -> tuple[float, dict[tuple[str, int], PathOverhead]] | None:
        if not profile.is_file():
            return None
        prof = load_profile(profile, digest)
        return prof.dispatch_overhead_ms(), path_overheads(prof)

    return read


def _register() -> None:
    from gearshift.cli_experiment import experiment, simulate
    from gearshift.cli_fashion import evaluate, zoo_prune, zoo_quantize
    from gearshift.cli_loadgen import loadgen

    app.command()(experiment)
    app.command()(simulate)
    app.command()(loadgen)
    app.command()(evaluate)
    zoo_app.command("quantize")(zoo_quantize)
    zoo_app.command("prune")(zoo_prune)


_register()


def main() -> None:
    """The `gearshift` program. A SIGTERM stops any command as an error would, through its
    `finally` blocks, so that what it started (an experiment's server and its workers) stops
    too; set here, for the process the program owns, not where `app` runs inside another
    (a test's runner, a library)."""
    exit_on_sigterm()
    app()


if __name__ == "__main__":
    main()
