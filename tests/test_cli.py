"""The command line, run as a user would: build a pool, check it, profile it."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gearshift.cli import app
from gearshift.types import Allocation

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_build_check_and_profile_tiny_pool(tmp_path: Path) -> None:
    r = runner.invoke(app, ["zoo", "build", "tiny", "--out", str(tmp_path / "zoo")])
    assert r.exit_code == 0, r.output
    spec = tmp_path / "zoo" / "pool.yaml"
    assert spec.is_file()
    r = runner.invoke(app, ["pool", "check", str(spec), "--allocation", "2x1",
                            "--allocation", "1x2"])
    assert r.exit_code == 0, r.output
    for name in ("tiny-s", "tiny-m", "tiny-l"):
        assert r.output.count(name) == 2  # one row per allocation
    r = runner.invoke(app, ["profile", str(spec), "--quick", "--cores", "2",
                            "--out", str(tmp_path / "profile.json")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "profile.json").is_file()
    plan = ["plan", str(tmp_path / "profile.json"), "--deadline-ms", "50", "--points", "4",
            "--sim-seconds", "5", "--out", str(tmp_path / "policy.json")]
    for speeds, planned in (("", []), ("1.25", [1.25])):
        r = runner.invoke(app, [*plan, "--speeds", speeds])
        assert r.exit_code == 0, r.output
        table = json.loads((tmp_path / "policy.json").read_text())
        assert [g["speed"] for g in table["speed_grids"]] == planned
    for bad in ("0.9", "1.2,fast"):
        r = runner.invoke(app, [*plan, "--speeds", bad])
        assert r.exit_code == 2 and "speeds must be" in r.output, r.output


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    r = runner.invoke(app, ["pool", "check", str(tmp_path / "nope.yaml")])
    # run inside another process (here the test's), a command leaves its SIGTERM alone: only
    # the `gearshift` program (`cli.main`) turns it into an exit
    assert signal.getsignal(signal.SIGTERM) == before
    assert r.exit_code == 2
    assert "error:" in r.output and "gearshift zoo build" in r.output
    r = runner.invoke(app, ["zoo", "build", "vgg", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "choose resnet, resnet-int8, resnet-mixed, fashion, tiny" in r.output
    r = runner.invoke(app, ["pool", "check", str(tmp_path / "nope.yaml"), "--allocation", "2by1"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["experiment", str(tmp_path / "pool.yaml"), "--rounds", "0"])
    assert r.exit_code == 2 and "--rounds" in r.output


def test_an_experiment_of_rounds_prints_each_round_and_the_margins(
        capsys: pytest.CaptureFixture[str]) -> None:
    from gearshift.cli_experiment import print_summary
    from gearshift.reports.summary import PolicySummary, build_summary, rounds_entry

    def ran(ea: float) -> PolicySummary:
        return PolicySummary(ea, 1.0, 50.0, 90.0, 10, 0, 0)

    runs = {"table": [ran(0.74), ran(0.73)], "static:a": [ran(0.70), ran(0.76)]}
    entry = rounds_entry([["table", "static:a"], ["static:a", "table"]], runs)
    print_summary(build_summary(100.0, "declared", {k: v[0] for k, v in runs.items()},
                                rounds=entry), None)
    printed = capsys.readouterr().out
    assert "effective accuracy in each of 2 rounds" in printed
    assert re.search(r"table - best static\W+\+0\.040\W+-0\.030\W+\+0\.005", printed)


def test_prewarm_table_loads_what_the_controller_may_choose() -> None:
    """The table and queue-aware controllers choose among every candidate of the planner's
    grid, so `--prewarm table` loads its allocations too; table:paper and statics keep to
    the ranges'."""
    from gearshift.errors import GearshiftError
    from gearshift.planning.table import GridPoint, PolicyRange, PolicyTable
    from gearshift.serving.server import prewarm_allocations

    def point(r: int, t: int) -> GridPoint:
        return GridPoint(rate_rps=1.0, variant="a", replicas=r, threads=t, p_on_time=1.0,
                         effective_accuracy=0.5, p50_ms=1.0, p99_ms=2.0)

    table = PolicyTable(application="x", pool_digest="x", deadline_ms=100.0, cores=2,
                        ranges=[PolicyRange(min_rps=0.0, max_rps=float("inf"), variant="a",
                                            replicas=2, threads=1, p_on_time=1.0,
                                            effective_accuracy=0.5)],
                        grid=[point(2, 1), point(1, 2)])
    both = (Allocation(2, 1), Allocation(1, 2))
    assert prewarm_allocations(table, "table", "table") == both
    assert prewarm_allocations(table, "queue-aware", "table") == both
    assert prewarm_allocations(table, "table:paper", "table") == (Allocation(2, 1),)
    assert prewarm_allocations(table, "static:a", "none") == ()
    assert set(prewarm_allocations(table, "static:a", "all")) == set(both)
    with pytest.raises(GearshiftError, match="use table, all or none"):
        prewarm_allocations(table, "table", "some")


def test_plan_options_default_to_the_plan_settings() -> None:
    """`gearshift plan` has no constants of its own: its defaults are `PlanSettings`'."""
    import inspect

    from gearshift.cli import plan
    from gearshift.planning.settings import DEFAULT_PLAN

    d = {k: p.default for k, p in inspect.signature(plan).parameters.items()}
    assert (d["points"], d["sim_seconds"], d["headroom"], d["period_s"]) == (
        DEFAULT_PLAN.points, DEFAULT_PLAN.duration_s, DEFAULT_PLAN.headroom,
        DEFAULT_PLAN.period_s)
    assert tuple(float(x) for x in d["speeds"].split(",")) == DEFAULT_PLAN.speeds


def test_a_served_controller_plans_for_the_tables_deadline_not_the_pools(
        tiny_spec, tmp_path: Path) -> None:
    """A table planned for 900 ms on a pool whose requests default to its own deadline: the
    controller `gearshift serve` builds (at start and at a controller switch) judges its
    backlog against 900 ms, the deadline its table's choices were planned for (with the
    pool's, `absorb` refused to hold a heavier variant behind a backlog that 600 ms held)."""
    import numpy as np

    from gearshift.cli import _policies_from_files
    from gearshift.control.policies import QueueAwarePolicy, Upgrading
    from gearshift.planning.planner import plan
    from gearshift.planning.settings import PlanSettings
    from gearshift.planning.table import save_policy
    from gearshift.profiling.profile import save_profile
    from tests.synthetic import make_profile

    a12 = Allocation(1, 2)
    small, large = tiny_spec.variant_names()[:2]
    profile = make_profile({(large, a12): [20.0] * 50, (small, a12): [5.0] * 50},
                           {large: 0.8, small: 0.6}, overhead_ms=[1.0], cores=2)
    profile = profile.model_copy(update={"application": tiny_spec.application,
                                         "pool_digest": tiny_spec.digest()})
    deadline_ms = 3 * tiny_spec.deadline_ms
    table = plan(profile, deadline_ms, [float(r) for r in np.linspace(1.0, 200.0, 10)],
                 PlanSettings(duration_s=5.0))
    save_profile(profile, tmp_path / "profile.json")
    save_policy(table, tmp_path / "policy.json")
    build = _policies_from_files(tiny_spec, tmp_path / "policy.json", tmp_path / "profile.json",
                                 {}, tiny_spec.digest())
    for name in ("table", "queue-aware"):
        wrapped, _ = build(name)
        assert isinstance(wrapped, Upgrading)
        policy = wrapped.policy
        assert isinstance(policy, QueueAwarePolicy)
        assert policy.deadline_s == pytest.approx(deadline_ms / 1000.0)
