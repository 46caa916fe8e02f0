"""Commands that run whole experiments: `experiment`, `simulate` and `demo`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from gearshift.control.factory import (
    OPTION_HELP,
    POLICY_NAMES,
    check_options,
    parse_options,
)
from gearshift.errors import GearshiftError
from gearshift.policy import ORACLE, TABLE

if TYPE_CHECKING:
    from gearshift.reports.summary import RoundsJSON, SummaryDoc

console = Console(stderr=True)
out = Console()


def _fail(exc: GearshiftError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc.message}")
    return typer.Exit(code=2)


def print_summary(summary: SummaryDoc, report: Path | None) -> None:
    t = Table(title=f"deadline {summary['deadline_ms']:g} ms; effective accuracy basis: "
                    f"{summary['accuracy_basis']}")
    t.add_column("policy", no_wrap=True)
    for col in ("eff. acc.", "on time", "p50 ms", "p99 ms", "requests", "errors", "switches"):
        t.add_column(col, justify="right")
    for name, p in summary["policies"].items():
        label = f"{name} (sim.)" if name == ORACLE else name
        t.add_row(label, _f(p["effective_accuracy"], 3), _f(p["on_time"], 3),
                  _f(p["p50_ms"], 1), _f(p["p99_ms"], 1), str(p["requests"]), str(p["errors"]),
                  str(p["switches"]))
    out.print(t)
    if "rounds" in summary:
        out.print(_rounds_table(summary["rounds"]))
    if report is not None:
        out.print(f"report: [bold]{report}[/]")


def _rounds_table(rounds: RoundsJSON) -> Table:
    """Each policy's effective accuracy in each round and their mean, and the switching
    policies' margins over the best static variant."""
    n = len(rounds["orders"])
    t = Table(title=f"effective accuracy in each of {n} rounds (the table above: round 1)")
    t.add_column("policy", no_wrap=True)
    for r in range(n):
        t.add_column(f"round {r + 1}", justify="right")
    t.add_column("mean", justify="right")
    for name, runs in rounds["policies"].items():
        t.add_row(name, *(_f(p["effective_accuracy"], 3) for p in runs),
                  _f(rounds["mean_effective_accuracy"][name], 3))
    for name, margins in rounds["margin_over_best_static"].items():
        t.add_row(f"{name} - best static", *(_signed(m) for m in margins))
    return t


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3f}"


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def experiment(
    pool: Annotated[Path, typer.Argument(help="pool.yaml")],
    workload: Annotated[str, typer.Option(help="e.g. mmpp, mmpp:dwell=5, poisson:20, "
                                                "trace:FILE,mean=20")] = "mmpp",
    duration: Annotated[float, typer.Option(help="seconds of load per policy")] = 60.0,
    deadline_ms: Annotated[float | None, typer.Option(help="default: the pool spec's")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("out/exp"),
    cache: Annotated[Path, typer.Option(help="profile cache folder")] = Path("out/cache"),
    data: Annotated[str | None, typer.Option(help="labelled data set: fashion-test")] = None,
    samples: Annotated[int, typer.Option(help="profiling samples per variant and RxT")] = 100,
    period_s: Annotated[float, typer.Option(help="control period, s")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of the arrival schedule")] = 0,
    cores: Annotated[int, typer.Option(help="core budget; default: all usable")] = 0,
    sweep_seconds: Annotated[float, typer.Option(
        help="simulated seconds of the workload for the deadline sweep, in paths of --duration "
             "(the live one, then the next seeds')",
        min=0)] = 600.0,
    controller_option: Annotated[list[str] | None, typer.Option(
        help=OPTION_HELP + "; each policy gets them if it takes them all")] = None,
    rounds: Annotated[int, typer.Option(
        help="run every policy this many times live on the same schedule, in alternating "
             "order (as listed, then reversed), so that a drift of the host's speed weighs on "
             "all alike; the summary adds each round and the mean", min=1)] = 1,
) -> None:
    """Profile, plan, serve and replay one arrival schedule against every policy, live and
    simulated; write records, summary.json and report.html."""
    from gearshift.experiment.runner import ExperimentSettings, run_experiment
    from gearshift.progress import stages

    try:
        options = parse_options(controller_option or [])
        check_options(options)
    except GearshiftError as exc:
        raise _fail(exc) from None
    settings = ExperimentSettings(
        pool=pool, workload=workload, duration_s=duration, out=out_dir, cache_dir=cache,
        deadline_ms=deadline_ms, seed=seed, cores=cores or len(os.sched_getaffinity(0)),
        samples=samples, period_s=period_s, data=data, sweep_seconds=sweep_seconds,
        controller_options=options, rounds=rounds)
    try:
        with stages(console) as stage:
            summary = run_experiment(settings, stage)
    except GearshiftError as exc:
        raise _fail(exc) from None
    print_summary(summary, out_dir / "report.html")


def simulate(
    profile: Annotated[Path, typer.Argument(help="profile JSON")],
    policy: Annotated[Path, typer.Option(help="policy table JSON")],
    workload: Annotated[str, typer.Option(help="workload spec, as for experiment")],
    duration: Annotated[float, typer.Option(help="seconds")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    controller: Annotated[str, typer.Option(help=f"{POLICY_NAMES} or {ORACLE}")] = TABLE,
    deadline_ms: Annotated[float | None, typer.Option(help="default: the policy's")] = None,
    period_s: Annotated[float, typer.Option(help="control period, s")] = 0.5,
    seed: Annotated[int, typer.Option(help="seed of arrivals and service draws")] = 0,
    controller_option: Annotated[list[str] | None, typer.Option(
        help=OPTION_HELP)] = None,
) -> None:
    """Replay a workload against one policy in the simulator; write records.csv and
    summary.json."""
    from gearshift.experiment.offline import simulate_policy
    from gearshift.loadgen.workload import parse_workload
    from gearshift.planning.table import load_policy
    from gearshift.profiling.profile import load_profile
    from gearshift.reports.frame import RecordFrame
    from gearshift.reports.summary import build_summary, summarize

    try:
        prof = load_profile(profile)
        table = load_policy(policy, prof.pool_digest)
        d = deadline_ms or table.deadline_ms
        arrivals = parse_workload(workload).arrivals(duration, seed, prof.capacity_rps())
        options = parse_options(controller_option or [])
        run = simulate_policy(controller, prof, table, prof.variants(), arrivals, d, seed,
                              period_s, duration, options)
    except GearshiftError as exc:
        raise _fail(exc) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    run.columns.write_csv(out_dir / "records.csv")
    summ = summarize(RecordFrame.from_columns(run.columns), prof.accuracy, "declared",
                     [dec.variant for dec in run.decisions])
    doc = build_summary(d, "declared", {controller: summ}, None, None,
                        {"source": "simulated", "workload": workload, "seed": seed})
    (out_dir / "summary.json").write_text(json.dumps(doc, indent=1))
    print_summary(doc, None)
    out.print(f"records and summary written to [bold]{out_dir}[/]")
