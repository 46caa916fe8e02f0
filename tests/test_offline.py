"""The experiment's simulations: the deadline sweep (every policy at every deadline, the same
numbers whether the deadlines run in this process or are shared among worker processes), and
a simulated run's switches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gearshift.experiment.offline import ORACLE, PAPER, SweepJob, deadline_sweep, simulate_policy
from gearshift.planning.settings import PlanSettings
from gearshift.reports.frame import RecordFrame
from gearshift.reports.summary import summarize
from gearshift.types import Allocation
from tests.synthetic import exponential_ms, make_profile
from tests.test_table_controller import planned_up_to

A2 = Allocation(2, 1)
PLAN = PlanSettings(points=12, duration_s=10.0)


def test_sweep_is_the_same_in_one_process_and_in_two() -> None:
    profile = make_profile(
        {("slow", A2): exponential_ms(80.0), ("fast", A2): exponential_ms(10.0, seed=2)},
        {"slow": 0.9, "fast": 0.6}, overhead_ms=[1.0], cores=2)
    rng = np.random.default_rng(5)
    arrivals = np.sort(np.concatenate([rng.uniform(0, 10, 100), rng.uniform(10, 20, 500)]))
    quiet = np.sort(rng.uniform(0, 20, 40))
    job = SweepJob(profile, ["slow", "fast"], (arrivals, quiet), seeds=(3, 4), period_s=0.5,
                   duration_s=20.0, plan=PLAN)
    progress: list[tuple[int, int]] = []
    serial = deadline_sweep(job, [100.0, 400.0], lambda d, t, _: progress.append((d, t)),
                            workers=1)
    assert set(serial) == {"table", "queue-aware", "static:slow", "static:fast", PAPER, ORACLE}
    assert all(len(v) == 2 for v in serial.values())
    assert progress[-1] == (2, 2)
    assert serial["static:slow"][0] < serial["static:slow"][1]  # a longer deadline helps
    assert serial[ORACLE][1] >= max(serial["static:slow"][1], serial["static:fast"][1])
    assert deadline_sweep(job, [100.0, 400.0], workers=2) == serial
    alone = deadline_sweep(SweepJob(profile, ["slow", "fast"], (quiet,), (4,), 0.5, 20.0, PLAN),
                           [400.0], workers=1)
    busy = deadline_sweep(SweepJob(profile, ["slow", "fast"], (arrivals,), (3,), 0.5, 20.0,
                                   PLAN), [400.0], workers=1)
    pooled = (600 * busy["static:slow"][0] + 40 * alone["static:slow"][0]) / 640
    assert serial["static:slow"][1] == pytest.approx(pooled)  # per request over both paths


def test_simulate_passes_controller_options_and_lists_the_registrys(tmp_path, monkeypatch) -> None:
    """`gearshift simulate --controller-option` reaches the policy; a bad one fails with the
    registry's list of options, which the help texts show as well."""
    from typer.testing import CliRunner

    from gearshift.cli import app
    from gearshift.control.factory import OPTION_HELP, POLICY_NAMES, REGISTRY, SWITCHING
    from gearshift.experiment import offline
    from gearshift.planning.planner import plan_table
    from gearshift.planning.table import save_policy
    from gearshift.profiling.profile import save_profile

    profile = make_profile(
        {("slow", A2): exponential_ms(80.0), ("fast", A2): exponential_ms(10.0, seed=2)},
        {"slow": 0.9, "fast": 0.6}, overhead_ms=[1.0], cores=2)
    save_profile(profile, tmp_path / "profile.json")
    save_policy(plan_table(profile, 300.0, PLAN, True, 0), tmp_path / "policy.json")
    seen: list[object] = []
    real = offline.make_policy

    def spy(*args: object) -> object:
        seen.append(args[4])  # options
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(offline, "make_policy", spy)
    base = ["simulate", str(tmp_path / "profile.json"), "--policy", str(tmp_path / "policy.json"),
            "--workload", "poisson:20", "--duration", "5", "--out", str(tmp_path / "out")]
    ok = CliRunner().invoke(app, [*base, "--controller-option", "jump_z=7"])
    assert ok.exit_code == 0, ok.output
    assert seen == [{"jump_z": 7.0}]
    bad = CliRunner().invoke(app, [*base, "--controller-option", "bogus=1"])
    assert bad.exit_code == 2 and "no option bogus" in bad.output
    assert SWITCHING == tuple(n for n, k in REGISTRY.items() if k.switching) != ()
    assert all(n in POLICY_NAMES for n in REGISTRY if n != "static")
    assert all(o in OPTION_HELP for k in REGISTRY.values() for o in k.options)


def test_a_simulated_runs_switches_are_its_decisions_not_its_fallbacks_answers() -> None:
    """At 10 requests/s, about heavy's capacity, the table keeps heavy for most periods and
    its fallback (light) answers the requests heavy would answer late: the answering variant
    changes dozens of times, the decided one a few. The experiment counts a simulated run's
    switches as a live run's, from the decisions."""
    profile, table = planned_up_to(80.0)
    arrivals = np.cumsum(np.random.default_rng(1).exponential(0.1, 200))
    run = simulate_policy("table", profile, table, profile.variants(), arrivals, 300.0, 0, 0.5,
                          20.0)
    frame = RecordFrame.from_columns(run.columns)
    decided = run.decided_variants
    assert set(decided) == {"heavy", "light"} and len(decided) == len(run.decisions)
    switches = summarize(frame, profile.accuracy, "declared", decided).switches
    assert switches == sum(a != b for a, b in itertools.pairwise(decided))
    assert summarize(frame, profile.accuracy, "declared").switches > 5 * switches
