"""A short real experiment on tiny variants: profile, plan, live server, simulator, report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from gearshift.errors import SpecError
from gearshift.experiment.calibrate import CalibrationSettings
from gearshift.experiment.runner import ExperimentSettings, round_orders, run_experiment
from gearshift.planning.settings import PlanSettings
from gearshift.profiling.profile import load_profile
from gearshift.reports.frame import read_records

pytestmark = pytest.mark.slow
KEYS = {"effective_accuracy", "on_time", "p50_ms", "p99_ms", "requests", "errors", "switches"}


def test_short_experiment_writes_every_artefact(tiny_pool_path: Path, tmp_path: Path) -> None:
    stages: list[str] = []

    def stage(title: str):
        stages.append(title)
        return lambda done, total, msg: None

    out = tmp_path / "exp"
    settings = ExperimentSettings(
        pool=tiny_pool_path, workload="poisson:40", duration_s=3.0, out=out,
        cache_dir=tmp_path / "cache", cores=2, samples=10, settle_s=0.5, sweep=(0.5, 1.0, 2.0),
        plan=PlanSettings(points=20, duration_s=10.0), sweep_seconds=12.0,
        # the lowest level at half the entry's load: a tiny entry is path-bound (its lowest
        # level's second holds MIN_ENTRY_SAMPLES requests) once HTTP takes ~450 req/s, which
        # a busy machine gives (at the default quarter it needed ~900: 802 measured, failed)
        calibration=CalibrationSettings(levels=(0.5, 0.625, 0.75, 0.875)), rounds=2)
    summary = run_experiment(settings, stage)
    assert stages[:2] == ["profiling", "planning"] and "live runs" in stages
    names = ["table", "queue-aware", "static:tiny-s", "static:tiny-m", "static:tiny-l"]
    assert list(summary["policies"]) == [*names, "oracle"]
    assert summary["accuracy_basis"] == "declared" and summary["deadline_ms"] == 50.0
    assert all(set(p) >= KEYS for p in summary["policies"].values())
    assert summary["deadlines"]["source"] == "simulated"
    assert summary["deadlines"]["deadline_ms"] == [25.0, 50.0, 100.0]
    assert set(summary["deadlines"]["policies"]) == {*names, "table:paper", "oracle"}
    # the sweep simulates a longer stretch of the same workload than the live runs
    assert summary["deadlines"]["duration_s"] == 12.0
    assert summary["deadlines"]["requests"] > 3 * summary["policies"]["table"]["requests"]
    assert "table:paper" in summary["simulated"]  # the ablation: the table without fallbacks
    assert list(summary.get("replayed", {})) == names  # each live run, its own service times
    periods = round(settings.duration_s / settings.period_s) + 1
    for doc in (summary["simulated"], summary["replayed"]):  # decisions, not fallbacks' answers
        assert all(p["switches"] <= periods for p in doc.values()), doc
    assert json.loads((out / "summary.json").read_text()) == summary
    n = summary["policies"]["table"]["requests"]
    for name in names:
        live = read_records(out / "records" / f"{name.replace(':', '-')}.csv")
        sim = read_records(out / "records" / f"sim-{name.replace(':', '-')}.csv")
        replay = read_records(out / "records" / f"replay-{name.replace(':', '-')}.csv")
        assert len(live) == len(sim) == len(replay) == n  # the same schedule, one record each
        assert sorted(live.request_id) == list(range(n))
        assert summary["policies"][name]["errors"] == 0
    # a second round ran every policy again on the same schedule, in the reverse order
    rounds = summary["rounds"]
    assert rounds["orders"] == [names, names[::-1]]
    assert list(rounds["policies"]) == names
    for name in names:
        first, second = rounds["policies"][name]
        assert first == summary["policies"][name]  # round 1 is the headline
        assert second["requests"] == n and second["errors"] == 0
        assert second["switches"] <= periods  # the controller's, from its control log
        again = read_records(out / "records" / "round2" / f"{name.replace(':', '-')}.csv")
        assert sorted(again.request_id) == list(range(n))
    assert set(rounds["margin_over_best_static"]) == {"table", "queue-aware"}
    # each live run's policy starts from a quiet server: the run before's arrivals were
    # observed by its own policy, none by the next one's first period
    lines = [json.loads(x) for x in (out / "control.jsonl").read_text().splitlines()]
    firsts = [b for a, b in itertools.pairwise(lines) if b["policy"] != a["policy"]
              and b["policy"] in names]
    assert len(firsts) >= 2 * len(names) - 1
    assert all(x["observation"]["arrivals"] == 0 for x in firsts), firsts
    lags = summary["notes"]["send_lag_p99_ms"]  # the load generator's, in every round
    assert isinstance(lags, dict) and all(isinstance(v, list) and len(v) == 2 and min(v) >= 0
                                          for v in lags.values())
    static_l = summary["policies"]["static:tiny-l"]
    assert static_l["effective_accuracy"] == pytest.approx(0.8 * static_l["on_time"], abs=1e-6)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "static:tiny-m" in html
    assert "Effective accuracy in each of 2 rounds" in html
    assert "simulated on 4 paths of 3 s of the workload (seeds 0-3" in html
    assert summary["deadlines"]["paths"] == 4 and summary["deadlines"]["seeds"] == [0, 3]
    assert (out / "profile.json").is_file() and (out / "policy.json").is_file()
    # tiny models are far faster than the HTTP path: the path's cost is measured by load
    calibrated = load_profile(out / "profile.json")
    levels = [x.utilization for x in calibrated.overhead_by_load]
    assert len(levels) >= 3 and levels == sorted(levels) and calibrated.frontend_cpu_ms > 0
    for e in calibrated.entries:
        assert e.path_bound, e.variant
        assert e.throughput_rps <= summary["notes"]["http_capacity_rps"] + 0.01
    # a second run takes the profile from the cache
    assert len(list((tmp_path / "cache").glob("profile-*.json"))) == 1


def test_rounds_alternate_the_order_and_a_bad_count_is_refused() -> None:
    names = ["table", "static:a", "static:b"]
    assert round_orders(names, 1) == (tuple(names),)
    assert round_orders(names, 3) == (tuple(names), tuple(names[::-1]), tuple(names))
    with pytest.raises(SpecError, match="at least 1"):
        round_orders(names, 0)
