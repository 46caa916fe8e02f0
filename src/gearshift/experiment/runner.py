"""`gearshift experiment`: profile (cached), plan, serve, replay one arrival schedule against every
policy live and in the simulator (plus a hindsight oracle), then write records, summary.json,
figures and report.html.

Layout of `out`: profile.json, policy.json, server.log, control.jsonl, records/<policy>.csv,
records/sim-<policy>.csv, records/replay-<policy>.csv, figures/*.png, summary.json,
report.html; with `rounds` > 1, records/round<r>/<policy>.csv for rounds 2 and on.
"""

from __future__ import annotations

import asyncio
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gearshift.control.factory import SWITCHING, options_for
from gearshift.errors import SpecError
from gearshift.experiment import offline
from gearshift.experiment.calibrate import CalibrationSettings, calibrate
from gearshift.experiment.live import LiveRun, ServerArgs, live_server, run_policy
from gearshift.experiment.replay import replay_profile
from gearshift.loadgen.payloads import Payload, labelled_payloads, random_payloads
from gearshift.loadgen.workload import parse_workload
from gearshift.planning.planner import plan_table
from gearshift.planning.settings import DEFAULT_PLAN, PlanSettings
from gearshift.planning.table import PolicyTable, save_policy
from gearshift.policy import ORACLE, PAPER, TABLE
from gearshift.profiling.profile import Profile, save_profile
from gearshift.profiling.profiler import ProfileSettings
from gearshift.progress import StepCallback as Progress
from gearshift.records import write_records
from gearshift.reports import figures
from gearshift.reports.compare import compare
from gearshift.reports.control_log import (
    ControlTrace,
    Segment,
    offered_load,
    segments_from_control,
)
from gearshift.reports.frame import RecordFrame
from gearshift.reports.html import CAPTIONS, write_report
from gearshift.reports.summary import (
    Basis,
    PolicySummary,
    RoundsJSON,
    SummaryDoc,
    SweepCoverage,
    SweepResult,
    build_summary,
    rounds_entry,
    summarize,
)
from gearshift.types import JSON, ControlLine
from gearshift.zoo.spec import PoolSpec, load_pool_spec

Stage = Callable[[str], Progress]  # stage title -> progress callback for that stage
SWEEP = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # deadlines of the sweep, x the run's deadline


@dataclass(frozen=True)
class ExperimentSettings:
    pool: Path
    workload: str
    duration_s: float
    out: Path
    cache_dir: Path
    deadline_ms: float | None = None  # None: the pool spec's
    seed: int = 0
    cores: int = 1
    samples: int = 100
    period_s: float = 0.5
    settle_s: float = 1.0
    data: str | None = None  # a labelled data set ("fashion-test"): correctness per request
    policies: tuple[str, ...] = ()  # () = table, queue-aware and every static variant
    # each policy runs this many times live on the one schedule, in orders that alternate
    # (`round_orders`), so that a drift of the host's speed over the minutes of a run weighs
    # on every policy alike; the figures and the simulated comparison are round 1's
    rounds: int = 1
    sweep: tuple[float, ...] = SWEEP
    plan: PlanSettings = DEFAULT_PLAN  # for the run's tables, at the run's period_s
    # controller settings by name (`--controller-option`): each policy gets them if its kind
    # takes them all (`control.factory.options_for`); the live server, the table's
    controller_options: dict[str, float] = field(default_factory=dict)
    # The deadline sweep simulates this many seconds of the workload, as paths as long as the
    # live run (the live one and others drawn with the next seeds): one path visits a handful of
    # load levels, and which static variant it favours is luck (BENCHMARKS.md); one long path
    # of a Markov load is as much luck, in which levels it dwells on
    sweep_seconds: float = 600.0
    # how the profile is re-measured through the server (its seed is the run's)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)


@dataclass(frozen=True)
class _Run:
    """What the live stage gathered: the profile as calibrated through the server, the table
    planned from it, the one arrival schedule every policy got and each policy's live run."""

    spec: PoolSpec
    deadline_ms: float
    profile: Profile
    table: PolicyTable
    arrivals_s: np.ndarray
    capacity_rps: float  # what the default mmpp is scaled to
    http_capacity_rps: float
    orders: tuple[tuple[str, ...], ...]  # the policies in the order each round ran them
    rounds: dict[str, list[LiveRun]]  # each policy's run in each round

    @property
    def live(self) -> dict[str, LiveRun]:
        """Each policy's round-1 run."""
        return {name: runs[0] for name, runs in self.rounds.items()}


def round_orders(names: list[str], rounds: int) -> tuple[tuple[str, ...], ...]:
    """The order each round runs the policies in: as given, then reversed, and so on. Two
    rounds put every policy at the same mean position, so a drift of the host's speed that is
    linear in time weighs on each alike. Raises SpecError for fewer than one round."""
    if rounds < 1:
        raise SpecError(f"rounds must be at least 1, got {rounds}")
    return tuple(tuple(names if r % 2 == 0 else reversed(names)) for r in range(rounds))


@dataclass(frozen=True)
class _Calibrated:
    """The profile re-measured through the live server, its table and the capacities."""

    profile: Profile
    table: PolicyTable
    capacity_rps: float  # what both the pool and the HTTP front end answer
    http_capacity_rps: float


def run_experiment(s: ExperimentSettings, stage: Stage) -> SummaryDoc:
    """Run everything; returns the summary document (also written to `out/summary.json`)."""
    spec = load_pool_spec(s.pool)
    parse_workload(s.workload)  # a bad spec fails now, not after profiling
    round_orders([], s.rounds)  # as does a bad count of rounds
    deadline_ms = s.deadline_ms or spec.deadline_ms
    s.out.mkdir(parents=True, exist_ok=True)
    profile = _offline(s, spec, deadline_ms, stage)
    names = list(s.policies) or offline.policy_names(spec.variant_names())
    payloads, basis = _payloads(s, spec, deadline_ms)
    run = _live(s, spec, deadline_ms, profile, names, payloads, stage)
    paper = plan_table(run.profile, run.deadline_ms, _plan_settings(s), False, s.seed)
    sims = _simulate(s, run, paper, names, stage("simulating"))
    frames = {n: RecordFrame.from_records(run.live[n].records) for n in names}
    twins = {n: RecordFrame.from_columns(r.columns) for n, r in sims.items()}
    replays = _replay(s, run, paper, frames, twins, names,
                      stage("replaying with the runs' service times"))
    return _write_results(s, run, frames, sims, twins, replays, names, basis, stage)


def _offline(s: ExperimentSettings, spec: PoolSpec, deadline_ms: float,
             stage: Stage) -> Profile:
    """Profile the pool (or take it from the cache) and write the table the server starts with."""
    settings = ProfileSettings(cores=s.cores, samples=s.samples, overhead_samples=50)
    profile, _ = asyncio.run(offline.profile_pool(spec, settings, s.cache_dir,
                                                  stage("profiling")))
    save_profile(profile, s.out / "profile.json")
    _plan(s, profile, deadline_ms, stage("planning"))
    return profile


def _plan(s: ExperimentSettings, profile: Profile, deadline_ms: float,
          progress: Progress) -> PolicyTable:
    table = plan_table(profile, deadline_ms, _plan_settings(s), True, s.seed, progress)
    save_policy(table, s.out / "policy.json")
    return table


def _plan_settings(s: ExperimentSettings) -> PlanSettings:
    """The run's planning settings, for the control period the server runs."""
    return replace(s.plan, period_s=s.period_s)


def _arrivals(s: ExperimentSettings, capacity_rps: float, seed: int) -> np.ndarray:
    """`s.duration_s` of the workload at `seed`, rates given per capacity (the default mmpp,
    `0.5x`) scaled to `capacity_rps`."""
    return parse_workload(s.workload).arrivals(s.duration_s, seed, capacity_rps)


def _draw_arrivals(s: ExperimentSettings, capacity_rps: float) -> np.ndarray:
    """The one arrival schedule every policy gets, scaled (default mmpp) to `capacity_rps`."""
    arrivals_s = _arrivals(s, capacity_rps, s.seed)
    if len(arrivals_s) == 0:
        raise SpecError(f"workload {s.workload!r} gives no arrivals in {s.duration_s:g} s")
    return arrivals_s


def _payloads(s: ExperimentSettings, spec: PoolSpec, deadline_ms: float) -> tuple[
        list[Payload], Basis]:
    if s.data is None:
        return random_payloads(spec, 32, s.seed, deadline_ms), "declared"
    if s.data != "fashion-test":
        raise SpecError(f"unknown data set {s.data!r}; the labelled one is fashion-test")
    from gearshift.data.fashion import load_fashion, normalize

    test = load_fashion("test")
    pick = np.random.default_rng(s.seed).permutation(len(test))[:2000]
    return labelled_payloads(spec, normalize(test.images[pick]), test.labels[pick],
                             deadline_ms), "labels"


def _live(s: ExperimentSettings, spec: PoolSpec, deadline_ms: float, profile: Profile,
          names: list[str], payloads: list[Payload], stage: Stage) -> _Run:
    args = ServerArgs(s.pool, s.out / "policy.json", s.out / "server.log",
                      s.out / "profile.json", s.out / "control.jsonl", s.period_s,
                      controller_options=tuple(options_for(TABLE, s.controller_options)
                                               .items()))
    (s.out / "control.jsonl").unlink(missing_ok=True)
    orders = round_orders(names, s.rounds)
    runs: dict[str, list[LiveRun]] = {name: [] for name in names}
    total = len(names) * len(orders)
    with live_server(args) as url:
        cal = _calibrate(s, spec, deadline_ms, profile, url, stage)
        arrivals_s = _draw_arrivals(s, cal.capacity_rps)
        progress = stage("live runs")
        for r, order in enumerate(orders):
            folder = s.out / "records" / ("" if r == 0 else f"round{r + 1}")
            label = f"round {r + 1} of {len(orders)}, " if len(orders) > 1 else ""
            for i, name in enumerate(order):
                progress(r * len(names) + i, total, f"{label}{name}: {len(arrivals_s)} requests")
                one = run_policy(url, spec.application, name, arrivals_s, payloads,
                                 deadline_ms, s.settle_s, quiet_s=2 * s.period_s)
                write_records(folder / f"{_file(name)}.csv", one.records)
                runs[name].append(one)
        progress(total, total, "live runs done")
    return _Run(spec, deadline_ms, cal.profile, cal.table, arrivals_s, cal.capacity_rps,
                cal.http_capacity_rps, orders, runs)


def _calibrate(s: ExperimentSettings, spec: PoolSpec, deadline_ms: float, profile: Profile,
               url: str, stage: Stage) -> _Calibrated:
    """Re-measure the profile through the live server (`experiment.calibrate`) and plan again
    from it; the server takes up the new table at the next controller switch. The default
    mmpp is scaled to what both the pool and the HTTP front end answer."""
    probe = random_payloads(spec, 8, s.seed, 60_000.0)  # no deadline cuts a probe short
    cal = calibrate(url, profile, probe, replace(s.calibration, seed=s.seed),
                    stage("calibrating through HTTP"))
    capacity_rps = min(cal.profile.capacity_rps(), cal.http_capacity_rps)
    save_profile(cal.profile, s.out / "profile.json")
    table = _plan(s, cal.profile, deadline_ms, stage("planning (calibrated)"))
    return _Calibrated(cal.profile, table, capacity_rps, cal.http_capacity_rps)


def _simulate(s: ExperimentSettings, run: _Run, paper: PolicyTable, names: list[str],
              progress: Progress) -> dict[str, offline.SimRun]:
    """Each policy, the paper's table without fallbacks and the oracle on the live schedule,
    in the simulator (`paper`: the table `table:paper` plans with)."""
    variants = run.spec.variant_names()
    sims: dict[str, offline.SimRun] = {}
    for i, name in enumerate([*names, PAPER, ORACLE]):
        progress(i, len(names) + 2, name)
        sim = offline.simulate_policy(name, run.profile, paper if name == PAPER
                                      else run.table, variants, run.arrivals_s,
                                      run.deadline_ms, s.seed, s.period_s, s.duration_s,
                                      options_for(name, s.controller_options))
        sim.columns.write_csv(s.out / "records" / f"sim-{_file(name)}.csv")
        sims[name] = sim
    progress(len(names) + 2, len(names) + 2, "simulations done")
    return sims


def _replay(s: ExperimentSettings, run: _Run, paper: PolicyTable,
            frames: dict[str, RecordFrame], twins: dict[str, RecordFrame], names: list[str],
            progress: Progress) -> dict[str, offline.SimRun]:
    """Each live run (`frames`) simulated again, its service times the run's own against its
    simulated twin's (`twins`; `replay`)."""
    variants = run.spec.variant_names()
    out: dict[str, offline.SimRun] = {}
    for i, name in enumerate(names):
        progress(i, len(names), name)
        served = replay_profile(run.profile, frames[name], twins[name])
        out[name] = offline.simulate_policy(name, run.profile,
                                            paper if name == PAPER else run.table, variants,
                                            run.arrivals_s, run.deadline_ms, s.seed, s.period_s,
                                            s.duration_s,
                                            options_for(name, s.controller_options), served)
        out[name].columns.write_csv(s.out / "records" / f"replay-{_file(name)}.csv")
    progress(len(names), len(names), "replays done")
    return out


def _file(name: str) -> str:
    return name.replace(":", "-").replace("/", "-")


def _control_lines(s: ExperimentSettings) -> list[ControlLine]:
    path = s.out / "control.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.is_file() else []


def _trace(s: ExperimentSettings, lines: list[ControlLine], name: str,
           live: LiveRun) -> ControlTrace | None:
    """A live run's control-log steps, on the run's clock (t = 0 at its first send)."""
    mine: list[ControlLine] = [{**ln, "t_s": ln["unix_s"] - live.started_unix_s}
                               for ln in lines if ln.get("policy") == name]
    mine = [ln for ln in mine if 0.0 < ln["t_s"] <= s.duration_s + s.period_s]
    return ControlTrace.from_lines(mine) if mine else None


def _traces(s: ExperimentSettings, run: _Run,
            lines: list[ControlLine]) -> dict[str, ControlTrace]:
    """Each policy's round-1 run's control-log steps (`_trace`)."""
    return {name: t for name, live in run.live.items()
            if (t := _trace(s, lines, name, live)) is not None}


def _rounds(s: ExperimentSettings, run: _Run, lines: list[ControlLine],
            measured: dict[str, PolicySummary], acc: dict[str, float],
            basis: Basis) -> RoundsJSON | None:
    """The summary's `rounds` entry (None for one round): round 1 is `measured`, every later
    run is summarized alike, its switches from its own stretch of the control log."""
    if len(run.orders) < 2:
        return None
    return rounds_entry(run.orders, {
        n: [measured[n], *(summarize(RecordFrame.from_records(one.records), acc, basis,
                                     _trace(s, lines, n, one)) for one in run.rounds[n][1:])]
        for n in run.rounds})


def _write_results(s: ExperimentSettings, run: _Run, frames: dict[str, RecordFrame],
                   sims: dict[str, offline.SimRun], twins: dict[str, RecordFrame],
                   replays: dict[str, offline.SimRun], names: list[str], basis: Basis,
                   stage: Stage) -> SummaryDoc:
    sweep = _sweep(s, run, stage("deadline sweep (simulated)"))
    progress = stage("report")
    progress(0, 2, "summary")
    acc = {v.name: v.accuracy.value for v in run.spec.variants}
    lines = _control_lines(s)
    traces = _traces(s, run, lines)
    measured = {n: summarize(frames[n], acc, basis, traces.get(n)) for n in names}
    simulated = {n: summarize(f, acc, "declared", sims[n].decided_variants)
                 for n, f in twins.items()}
    measured[ORACLE] = simulated[ORACLE]
    replayed = {n: summarize(RecordFrame.from_columns(r.columns), acc, "declared",
                             r.decided_variants) for n, r in replays.items()}
    summary = build_summary(run.deadline_ms, basis, measured, sweep,
                            {n: v for n, v in simulated.items() if n != ORACLE},
                            _notes(run, basis), replayed,
                            _rounds(s, run, lines, measured, acc, basis))
    (s.out / "summary.json").write_text(json.dumps(summary, indent=1))
    progress(1, 2, "figures and report")
    figs = _figures(s, run, frames, traces, measured, simulated, replayed, sweep, acc)
    write_report(s.out, summary, figs, _context(s, run, sweep))
    progress(2, 2, "done")
    return summary


def _sweep(s: ExperimentSettings, run: _Run, progress: Progress) -> SweepResult:
    """The summary's `deadlines` entry: every policy simulated at each deadline of the sweep
    over `sweep_seconds` of the workload, in paths of the live duration: the live schedule and
    paths drawn with the seeds after the run's."""
    n = max(1, round(s.sweep_seconds / s.duration_s))
    seeds = tuple(s.seed + i for i in range(n))
    paths = (run.arrivals_s, *(_arrivals(s, run.capacity_rps, seed) for seed in seeds[1:]))
    plan = _plan_settings(s)
    job = offline.SweepJob(run.profile, run.spec.variant_names(), paths, seeds, s.period_s,
                           s.duration_s, replace(plan, duration_s=min(plan.duration_s,
                                                                      plan.sweep_duration_s)),
                           s.controller_options)
    deadlines = [round(run.deadline_ms * k, 3) for k in s.sweep]
    return SweepResult(tuple(deadlines), "simulated",
                       offline.deadline_sweep(job, deadlines, progress),
                       SweepCoverage(n * s.duration_s, job.requests, n, (seeds[0], seeds[-1])))


def _figures(s: ExperimentSettings, run: _Run, frames: dict[str, RecordFrame],
             traces: dict[str, ControlTrace], measured: dict[str, PolicySummary],
             simulated: dict[str, PolicySummary], replayed: dict[str, PolicySummary],
             sweep: SweepResult, acc: dict[str, float]) -> list[Path]:
    d = s.out / "figures"
    d.mkdir(parents=True, exist_ok=True)
    adaptive = [n for n in SWITCHING if n in traces]
    segments: dict[str, list[Segment]] = {n: segments_from_control(traces[n]) for n in adaptive}
    load = offered_load(next(iter(frames.values())))
    paths = [
        figures.plot_switching_trace(load, segments, acc, d / "switching_trace.png",
                                     title=f"{run.spec.application}: {s.workload}"),
        figures.plot_accuracy_vs_deadline(sweep, acc, d / "accuracy_vs_deadline.png",
                                          run.deadline_ms),
        figures.plot_latency_cdf(frames, run.deadline_ms, acc, d / "latency_cdf.png"),
        figures.plot_sim_vs_measured(
            compare({n: m for n, m in measured.items() if n in frames},
                    {n: v for n, v in simulated.items() if n in frames}, replayed),
            acc, d / "sim_vs_measured.png"),
    ]
    return paths


def _notes(run: _Run, basis: Basis) -> dict[str, JSON]:
    return {
        "oracle": "simulated hindsight upper bound (per period, best variant and RxT knowing "
                  "the actual arrivals)",
        "simulated": "same arrival schedule and profile, in the discrete-event simulator",
        "replayed": "each live run simulated again with its replicas' own service times "
                    "(each variant's, quantile by quantile): the simulator's model without "
                    "the host's change of speed since calibration",
        "accuracy": {v.name: {"value": v.accuracy.value, "kind": v.accuracy.kind.value,
                              "metric": v.accuracy.metric} for v in run.spec.variants},
        "basis": basis,
        "calibration": run.profile.calibration,
        "profile_capacity_rps": round(run.profile.capacity_rps(), 2),
        "http_capacity_rps": round(run.http_capacity_rps, 2),
        "workload_capacity_rps": round(run.capacity_rps, 2),
        "requests": len(run.arrivals_s),
        # how late the load generator sent, p99 (ms): each policy's run, or with rounds, a list
        # of its runs in round order
        "send_lag_p99_ms": {n: round(r[0].send_lag_p99_ms, 3) if len(r) == 1
                            else [round(one.send_lag_p99_ms, 3) for one in r]
                            for n, r in run.rounds.items()},
    }


def _context(s: ExperimentSettings, run: _Run, sweep: SweepResult) -> dict[str, JSON]:
    sweep_caption = f"{CAPTIONS['accuracy_vs_deadline']} Each deadline has its own table"
    c = sweep.coverage
    sweep_caption += (
        "." if c is None else
        f"; simulated on {c.paths} paths of {s.duration_s:g} s of the workload (seeds "
        f"{c.seeds[0]}-{c.seeds[1]}, the live path first; {c.requests} requests), so that "
        "which static variant one path favours weighs less.")
    return {
        "captions": {"accuracy_vs_deadline": sweep_caption},
        "title": f"gearshift experiment: {run.spec.application}",
        "pool": f"{s.pool} ({', '.join(run.spec.variant_names())})",
        "workload": f"{parse_workload(s.workload).describe()} ({len(run.arrivals_s)} requests)",
        "duration_s": s.duration_s, "deadline_ms": run.deadline_ms, "period_s": s.period_s,
        "machine": f"{run.profile.machine.cpu_model}, {platform.platform()}",
        "cores": s.cores, "seed": s.seed, "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
