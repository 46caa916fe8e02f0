"""Reports: metrics from hand-made records checked against hand-computed numbers (both accuracy
bases, failed and dropped requests), deadline re-scoring, the CSV round trip, control logs, the
summary document, figures written as PNG, and a self-contained HTML report."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from gearshift.policy import Observation
from gearshift.records import write_records
from gearshift.reports import figures
from gearshift.reports.compare import Replay, RunCounts, SimCheck, compare
from gearshift.reports.control_log import (
    ControlTrace,
    Segment,
    align_offset_s,
    count_switches,
    offered_load,
    read_control_log,
    segments_from_control,
    segments_from_records,
)
from gearshift.reports.frame import RecordFrame, read_records
from gearshift.reports.html import write_report
from gearshift.reports.summary import (
    PolicySummary,
    SweepCoverage,
    SweepResult,
    build_summary,
    deadline_sweep,
    effective_accuracy_at,
    rounds_entry,
    summarize,
)
from gearshift.sim.records import RequestColumns
from gearshift.types import Allocation, Decision, RequestRecord

ACC = {"a": 0.8, "b": 0.6}
D = 100.0
PNG = b"\x89PNG\r\n\x1a\n"


def rec(i: int, sent: float, done: float, variant: str = "a", status: int = 200,
        correct: bool | None = True, error: str = "") -> RequestRecord:
    lat = (done - sent) * 1000
    return RequestRecord(request_id=i, scheduled_s=sent, sent_s=sent, completed_s=done,
                         status=status, variant=variant, queue_ms=1.0, service_ms=2.0,
                         deadline_ms=D, on_time=status == 200 and lat <= D, correct=correct,
                         error=error)


def hand_records() -> list[RequestRecord]:
    """Latencies (ms) of the answered ones: 50, 80, 150 (late), 100 (exactly D), 62.5, 90.
    One dropped (504) and one shed (503). Listed out of send order on purpose."""
    rows = [
        rec(0, 0.0, 0.050, "a", correct=True),
        rec(1, 0.5, 0.580, "b", correct=False),
        rec(2, 1.0, 1.150, "a", correct=True),
        rec(3, 1.2, 1.300, "a", correct=True),  # 100.00000000000009 ms in floats: on time
        rec(4, 2.0, 2.100, "", status=504, correct=None, error="deadline passed while queued"),
        rec(5, 2.5, 2.501, "", status=503, correct=None, error="overloaded"),
        rec(6, 3.0, 3.0625, "b", correct=True),
        rec(7, 3.5, 3.590, "a", correct=False),
    ]
    return [rows[i] for i in (7, 2, 0, 5, 1, 6, 4, 3)]


@pytest.fixture
def frame() -> RecordFrame:
    return RecordFrame.from_records(hand_records())


# --- summary ------------------------------------------------------------------------------------


def test_summary_declared_basis(frame: RecordFrame) -> None:
    s = summarize(frame, ACC, "declared")
    # on time: ids 0 (a), 1 (b), 3 (a), 6 (b), 7 (a) -> 5 of 8; 0.8 + 0.6 + 0.8 + 0.6 + 0.8 = 3.6
    assert s.requests == 8
    assert s.errors == 2
    assert s.on_time == pytest.approx(5 / 8)
    assert s.effective_accuracy == pytest.approx(3.6 / 8)
    # answered latencies sorted: 50, 62.5, 80, 90, 100, 150 (linear interpolation)
    assert s.p50_ms == pytest.approx(85.0)
    assert s.p99_ms == pytest.approx(100 + 0.95 * 50)
    # answering variant by send time: a b a a b a -> 4 changes
    assert s.switches == 4


def test_summary_labels_basis(frame: RecordFrame) -> None:
    s = summarize(frame, ACC, "labels")
    # on time and correct: ids 0, 3, 6 (1 and 7 are on time but wrong)
    assert s.effective_accuracy == pytest.approx(3 / 8)
    assert s.on_time == pytest.approx(5 / 8)


def test_switches_from_decisions(frame: RecordFrame) -> None:
    assert summarize(frame, ACC, "declared", decisions=["a", "a", "b", "b", "a"]).switches == 2
    trace = ControlTrace.from_lines([_line(1.0, "a", current="a"), _line(2.0, "b"),
                                     _line(3.0, "b")])
    assert summarize(frame, ACC, "declared", decisions=trace).switches == 1


def test_effective_accuracy_at_other_deadlines(frame: RecordFrame) -> None:
    # 60 ms: only id 0 (50 ms, a) is on time
    assert effective_accuracy_at(frame, ACC, "declared", 60.0) == pytest.approx(0.8 / 8)
    # 200 ms: every answered one; the 504 (100 ms before it was dropped) never counts
    assert effective_accuracy_at(frame, ACC, "declared", 200.0) == pytest.approx(4.4 / 8)
    assert effective_accuracy_at(frame, ACC, "labels", 200.0) == pytest.approx(4 / 8)
    # default: the records' own deadline, same as the summary
    assert effective_accuracy_at(frame, ACC, "declared") == pytest.approx(3.6 / 8)
    sweep = deadline_sweep({"table": frame}, ACC, "declared", [60, 200])
    assert sweep.to_json() == {"deadline_ms": [60.0, 200.0], "source": "measured",
                               "policies": {"table": [0.1, 0.55]}}


def test_summary_errors() -> None:
    unlabelled = RecordFrame.from_records([rec(0, 0.0, 0.01, correct=None)])
    with pytest.raises(ValueError, match="no label"):
        summarize(unlabelled, ACC, "labels")
    with pytest.raises(ValueError, match="no declared accuracy"):
        summarize(RecordFrame.from_records([rec(0, 0.0, 0.01, "zzz")]), ACC, "declared")
    with pytest.raises(ValueError, match="basis"):
        summarize(unlabelled, ACC, "measured")  # type: ignore[arg-type]
    empty = summarize(RecordFrame.from_records([]), ACC, "declared")
    assert empty.requests == 0 and math.isnan(empty.effective_accuracy)
    assert empty.to_json()["p99_ms"] is None


# --- records on disk ----------------------------------------------------------------------------


def test_read_records_round_trip(tmp_path: Path, frame: RecordFrame) -> None:
    path = write_records(tmp_path / "records.csv", hand_records())
    back = read_records(path)
    for name in ("request_id", "status", "variant", "on_time", "error"):
        assert list(getattr(back, name)) == list(getattr(frame, name)), name
    for name in ("scheduled_s", "sent_s", "completed_s", "queue_ms", "service_ms",
                 "deadline_ms", "correct"):
        np.testing.assert_allclose(getattr(back, name), getattr(frame, name), err_msg=name)
    assert back.on_time.dtype == bool and back.variant.dtype == object
    assert list(np.isnan(back.correct)) == [False, False, False, True, False, False, True, False]
    assert summarize(back, ACC, "labels") == summarize(frame, ACC, "labels")


def test_what_served_each_request_is_kept_and_counted(tmp_path: Path) -> None:
    """`served_as` goes to disk and back; the summary counts the answered requests upgraded
    and fallen back among those whose records say, and says nothing (NaN) where none does,
    as in a file written before the column was kept, which still reads."""
    roles = ["in_force", "upgrade", "fallback", "upgrade", "", "named"]
    rows = [dataclasses.replace(rec(i, i * 0.5, i * 0.5 + 0.05), served_as=r)
            for i, r in enumerate(roles)]
    rows[4] = dataclasses.replace(rows[4], status=504, variant="", on_time=False)
    back = read_records(write_records(tmp_path / "r.csv", rows))
    assert list(back.served_as) == roles
    s = summarize(back, ACC, "declared")
    assert (s.upgrades, s.fallbacks) == (pytest.approx(2 / 5), pytest.approx(1 / 5))
    again = PolicySummary.from_json(s.to_json())
    assert (again.upgrades, again.fallbacks) == (0.4, 0.2)
    old = tmp_path / "old.csv"
    lines = (tmp_path / "r.csv").read_text().splitlines()
    old.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    before = summarize(read_records(old), ACC, "declared")
    assert math.isnan(before.upgrades) and math.isnan(before.fallbacks)
    assert before.effective_accuracy == s.effective_accuracy
    (tmp_path / "bad.csv").write_text((tmp_path / "r.csv").read_text().replace(
        ",upgrade", ",upgraded", 1))
    with pytest.raises(ValueError, match=r"bad\.csv:3: column 'served_as' must be one of"):
        read_records(tmp_path / "bad.csv")


def test_read_records_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_records(tmp_path / "x.csv")
    path = write_records(tmp_path / "r.csv", [rec(0, 0.0, 0.01)])
    path.write_text(path.read_text().replace(",1,1,", ",1,maybe,"))
    with pytest.raises(ValueError, match=r"r\.csv:2"):
        read_records(path)


def test_simulated_columns_read_alike(tmp_path: Path) -> None:
    cols = RequestColumns(
        arrival_s=np.array([0.0, 0.5, 1.0, 1.5]), completed_s=np.array([0.05, 0.7, 1.1, 1.52]),
        status=np.array([200, 200, 504, 200], dtype=np.int16),
        variant_code=np.array([0, 1, -1, 0], dtype=np.int16), queue_ms=np.zeros(4),
        service_ms=np.array([50.0, 200.0, 0.0, 20.0]), deadline_ms=np.full(4, D),
        variants=("a", "b"), served_as_code=np.array([0, 0, -1, 0], dtype=np.int8))
    direct = RecordFrame.from_columns(cols)
    from_csv = read_records(cols.write_csv(tmp_path / "sim.csv"))
    assert list(direct.variant) == ["a", "b", "", "a"] == list(from_csv.variant)
    s = summarize(direct, ACC, "declared")
    assert s == summarize(from_csv, ACC, "declared")
    assert s.effective_accuracy == pytest.approx(cols.effective_accuracy(ACC)) == 1.6 / 4
    assert (s.errors, s.switches) == (1, 2)  # answered by a, b, a


# --- control logs -------------------------------------------------------------------------------


def _line(t: float, variant: str, arrivals: int = 0, current: str = "a",
          replicas: int = 2, threads: int = 1) -> dict:
    cur = {"variant": current, "replicas": 2, "threads": 1, "reason": ""}
    return {"t_s": t, "observation": {"t_s": t, "period_s": 1.0, "arrivals": arrivals,
                                      "rate_rps": float(arrivals), "queue_length": 0,
                                      "in_flight": 0, "completed": 0, "missed": 0,
                                      "latency_p99_ms": None, "current": cur},
            "decision": {"variant": variant, "replicas": replicas, "threads": threads,
                         "reason": "table"},
            "state": {}}


def test_control_log_runs_segments_and_switches(tmp_path: Path) -> None:
    first = [_line(1.0, "a"), _line(2.0, "b")]
    second = [_line(1.0, "a", current="b"), _line(2.0, "a", replicas=1, threads=2),
              _line(3.0, "b", replicas=1, threads=2)]
    path = tmp_path / "control.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in first + second) + "\n")
    assert len(read_control_log(path, run=0)) == 2
    trace = read_control_log(path)
    assert len(trace) == 3 and count_switches(trace) == 2  # b -> a, then a -> b
    assert segments_from_control(trace) == [
        Segment(0.0, 1.0, "b", 2, 1), Segment(1.0, 2.0, "a", 2, 1),
        Segment(2.0, 3.0, "a", 1, 2), Segment(3.0, 4.0, "b", 1, 2)]
    with pytest.raises(ValueError, match="run 5"):
        read_control_log(path, run=5)


def test_trace_from_simulator_steps_and_clip() -> None:
    a, b = Decision("a", Allocation(2, 1)), Decision("b", Allocation(1, 2))
    obs = [Observation(t_s=k + 1.0, period_s=1.0, arrivals=k, queue_length=0, in_flight=0,
                       completed=k, missed=0, latency_p99_ms=math.nan,
                       current=a if k < 2 else b) for k in range(5)]
    trace = ControlTrace.from_steps(obs, [a, b, b, a])  # the last observation has no decision
    assert len(trace) == 4 and list(trace.rate_rps) == [0.0, 1.0, 2.0, 3.0]
    assert count_switches(trace) == 2
    assert list(trace.shifted(1.0).clip(0.5, 2.0).t_s) == [1.0, 2.0]
    with pytest.raises(ValueError):
        ControlTrace.from_steps(obs[:1], [a, b])


def test_align_offset_finds_the_clock_shift() -> None:
    rng = np.random.default_rng(0)
    rates = np.repeat([3, 12, 6, 20, 2], 8)  # 40 s of load
    sent = np.sort(np.concatenate([k + rng.random(n) for k, n in enumerate(rng.poisson(rates))]))
    recs = [rec(i, float(s), float(s) + 0.01) for i, s in enumerate(sent)]
    f = RecordFrame.from_records(recs)
    offset = 37.3  # the server's control loop started 37.3 s before the load
    ends = np.arange(1.0, 100.0) + 0.3
    counts = [int(np.sum((sent > e - 1 - offset) & (sent <= e - offset))) for e in ends]
    trace = ControlTrace.from_lines([_line(float(e), "a", int(c)) for e, c in zip(ends, counts)])
    assert align_offset_s(trace, f) == pytest.approx(offset, abs=0.05)
    # the same arrivals replayed again 120 s later (a second policy on the same server)
    again = ControlTrace.from_lines([_line(float(e) + 120, "a", int(c))
                                     for e, c in zip(ends, counts)])
    both = ControlTrace.from_lines([_line(float(e), "a", int(c)) for e, c in zip(ends, counts)]
                                   + [_line(float(e) + 120, "a", int(c))
                                      for e, c in zip(ends, counts)])
    assert align_offset_s(again, f) == pytest.approx(offset + 120, abs=0.05)
    assert align_offset_s(both, f, bounds_s=(100, 200)) == pytest.approx(offset + 120, abs=0.05)


def test_segments_from_records_and_offered_load(frame: RecordFrame) -> None:
    segs = segments_from_records(frame, bin_s=1.0)
    # bin 0: a, b (a tie: the first by name wins), 1: a, a, 2: no answer (a gap), 3: a, b
    assert segs == [Segment(0.0, 2.0, "a"), Segment(3.0, 4.0, "a")]
    t, rate = offered_load(frame)
    assert list(t) == [0.0, 1.0, 2.0, 3.0] and list(rate) == [2, 2, 2, 2]


# --- summary document, comparison ---------------------------------------------------------------


def _summaries(frame: RecordFrame) -> dict[str, PolicySummary]:
    s = summarize(frame, ACC, "declared")
    return {"oracle": s, "static:a": s, "queue-aware": s, "table": s}


def test_build_summary_shape(frame: RecordFrame) -> None:
    pols = _summaries(frame)
    sweep = deadline_sweep({"table": frame}, ACC, "declared", [60, 200])
    doc = build_summary(D, "declared", pols, sweep, {"table": pols["table"]}, {"seed": 1})
    assert list(doc) == ["deadline_ms", "accuracy_basis", "policies", "deadlines", "simulated",
                         "notes"]
    assert list(doc["policies"]) == ["table", "queue-aware", "static:a", "oracle"]
    assert set(doc["policies"]["table"]) == {"effective_accuracy", "on_time", "p50_ms", "p99_ms",
                                             "requests", "errors", "switches", "service_ms",
                                             "upgrades", "fallbacks"}
    assert doc["deadlines"]["source"] == "measured"
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert PolicySummary.from_json(doc["policies"]["table"]).requests == 8
    empty = build_summary(D, "labels", pols, None, None, None)
    assert empty["deadlines"] == {"deadline_ms": [], "source": "measured", "policies": {}}
    assert empty["simulated"] == {}
    with pytest.raises(ValueError, match="notes"):
        build_summary(D, "declared", pols, None, None, {"x": object()})  # type: ignore[dict-item]


def _ran(ea: float) -> PolicySummary:
    return PolicySummary(ea, 1.0, 50.0, 90.0, 10, 0, 0)


def test_rounds_keep_each_run_the_mean_and_the_margins_over_the_best_static(
        tmp_path: Path, frame: RecordFrame) -> None:
    # static:b is the better static variant in round 1, static:a in round 2 and on the mean
    runs = {"static:a": [_ran(0.70), _ran(0.76)], "table": [_ran(0.74), _ran(0.73)],
            "static:b": [_ran(0.72), _ran(0.68)]}
    orders = [["table", "static:a", "static:b"], ["static:b", "static:a", "table"]]
    entry = rounds_entry(orders, runs)
    assert list(entry["policies"]) == ["table", "static:a", "static:b"]
    assert entry["orders"] == orders
    assert entry["policies"]["table"][1]["effective_accuracy"] == 0.73
    assert entry["mean_effective_accuracy"] == pytest.approx(
        {"table": 0.735, "static:a": 0.73, "static:b": 0.70})
    # round 1: 0.74 - 0.72; round 2: 0.73 - 0.76; the means: 0.735 - 0.73
    assert entry["margin_over_best_static"] == {"table": pytest.approx([0.02, -0.03, 0.005])}
    with pytest.raises(ValueError, match="one run per round"):
        rounds_entry(orders, {**runs, "table": [_ran(0.74)]})
    pols = _summaries(frame)
    doc = build_summary(D, "declared", pols, None, None, None, None, entry)
    assert doc["rounds"] == entry and json.loads(json.dumps(doc, allow_nan=False)) == doc
    html = write_report(tmp_path, doc, [], {}).read_text()
    assert "Effective accuracy in each of 2 rounds" in html
    assert "round 2: static:b, static:a, table" in html
    assert '<tr><td>table − best static</td><td class="num">+0.0200</td>' in html
    assert "rounds" not in build_summary(D, "declared", pols, None, None, None)
    assert "each of" not in write_report(tmp_path, build_summary(
        D, "declared", pols, None, None, None), [], {}).read_text()


def test_sweep_result_validates_and_keeps_the_json_layout() -> None:
    coverage = SweepCoverage(12.0, 480, 4, (0, 3))
    sweep = SweepResult((50.0, 25.0), "simulated",
                        {"static:a": (0.5, math.nan), "table": (0.61234567, None)}, coverage)
    assert json.dumps(sweep.to_json()) == (
        '{"deadline_ms": [50.0, 25.0], "source": "simulated", "policies": {"table": '
        '[0.612346, null], "static:a": [0.5, null]}, "duration_s": 12.0, "requests": 480, '
        '"paths": 4, "seeds": [0, 3]}')
    with pytest.raises(ValueError, match=r"2 deadlines .* lengths: \{'table': 1\}"):
        SweepResult((50.0, 25.0), "simulated", {"static:a": (0.5, 0.4), "table": (0.6,)})
    with pytest.raises(ValueError, match="source"):
        SweepResult((), "guessed", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="paths"):
        SweepCoverage(12.0, 480, 0, (0, 3))
    with pytest.raises(ValueError, match="seeds"):
        SweepCoverage(12.0, 480, 4, (3, 0))


def test_compare_tolerances() -> None:
    def s(on_time: float, p99: float) -> PolicySummary:
        return PolicySummary(0.7, on_time, 50.0, p99, 100, 0, 0)

    checks = compare({"table": s(0.90, 200.0), "static:a": s(0.90, 200.0), "oracle": s(1, 1)},
                     {"table": s(0.93, 230.0), "static:a": s(0.86, 170.0), "oracle": s(1, 1)})
    assert [c.policy for c in checks] == ["table", "static:a"]
    assert (checks[0].on_time_ok, checks[0].p99_ok) == (True, True)  # 0.03 and 15 % exactly
    assert (checks[1].on_time_ok, checks[1].p99_ok) == (False, True)
    assert checks[1].p99_rel_error == pytest.approx(-0.15)


def test_a_check_out_of_tolerance_says_why_from_the_runs_own_figures() -> None:
    quiet, busy = RunCounts(2000, 0, 0), RunCounts(2000, 340, 0)
    assert SimCheck("static:a", 0.90, 0.91, 100.0, 101.0, quiet, quiet).why == ""
    assert SimCheck("static:a", 0.50, 0.45, 300.0, 300.0, quiet, quiet).why.startswith(
        "neither saturated nor switching differently")
    assert SimCheck("static:a", 0.78, 0.70, 300.0, 300.0, RunCounts(2000, 200, 0), busy
                    ).why.startswith("saturated: 17% of requests shed live, 10% simulated")
    switched = SimCheck("table", 0.95, 0.90, 200.0, 200.0, RunCounts(2000, 0, 5),
                        RunCounts(2000, 0, 9)).why
    assert switched.startswith("switched 9 times live, 5 simulated")
    few = SimCheck("static:a", 0.95, 0.95, 100.0, 140.0, RunCounts(800, 0, 0),
                   RunCounts(800, 0, 0)).why
    assert few == "the p99 of 800 requests rests on its slowest 8"
    assert SimCheck("static:a", 0.5, 0.4, 1.0, 2.0).why == ""  # counts unknown: nothing said
    # a static run whose replicas served 14 % slower than the calibrated profile says so
    drift = SimCheck("static:a", 0.93, 0.84, 295.0, 317.0, RunCounts(658, 40, 0, 79.0),
                     RunCounts(658, 100, 0, 90.0)).why
    assert "the replicas served at 1.14 x the calibrated service time (90 ms mean live, 79 " \
           "simulated)" in drift and drift.startswith("saturated")
    within = SimCheck("static:a", 0.93, 0.84, 295.0, 317.0, RunCounts(658, 40, 0, 79.0),
                      RunCounts(658, 100, 0, 81.0)).why
    mixed = SimCheck("table", 0.93, 0.84, 295.0, 317.0, RunCounts(658, 40, 3, 79.0),
                     RunCounts(658, 100, 3, 90.0)).why  # several variants: no one speed
    assert "served at" not in within and "served at" not in mixed


def test_a_run_replayed_with_its_own_service_times_says_whether_the_model_holds() -> None:
    """Off as simulated from the calibrated profile (0.93 against 0.84 on time); replayed with
    the run's own service times within both tolerances: the host's speed had moved. A replay
    still off says so; a check without a replay says nothing of one."""
    sim, live = RunCounts(658, 40, 0, 79.0), RunCounts(658, 100, 0, 90.0)
    held = SimCheck("static:a", 0.93, 0.84, 295.0, 317.0, sim, live, Replay(0.86, 300.0))
    assert held.replay_ok is True and not held.ok
    assert held.why.endswith("replayed with the run's own service times: on time 0.860, p99 "
                             "300 ms, within both tolerances (the model holds; the host's "
                             "speed had moved)")
    still = SimCheck("static:a", 0.93, 0.84, 295.0, 317.0, sim, live, Replay(0.90, 300.0))
    assert still.replay_ok is False and "still off" in still.why
    assert SimCheck("static:a", 0.93, 0.84, 295.0, 317.0, sim, live).replay_ok is None
    checks = compare({"static:a": PolicySummary(0.7, 0.84, 50.0, 317.0, 658, 100, 0)},
                     {"static:a": PolicySummary(0.7, 0.93, 50.0, 295.0, 658, 40, 0)},
                     {"static:a": PolicySummary(0.7, 0.86, 50.0, 300.0, 658, 90, 0)})
    assert checks[0].replayed == Replay(0.86, 300.0) and checks[0].replay_ok


def test_a_policy_summary_keeps_its_mean_service_time_and_reads_older_summaries() -> None:
    p = PolicySummary(0.7, 0.9, 50.0, 120.0, 100, 2, 0, 79.1234)
    assert PolicySummary.from_json(p.to_json()) == dataclasses.replace(p, service_ms=79.123)
    older = {k: v for k, v in p.to_json().items() if k != "service_ms"}
    assert math.isnan(PolicySummary.from_json(older).service_ms)  # type: ignore[arg-type]


# --- figures and HTML ---------------------------------------------------------------------------


def _figures(tmp_path: Path, frame: RecordFrame) -> list[Path]:
    trace = ControlTrace.from_lines([_line(1.0, "a", 2), _line(2.0, "b", 2, replicas=1,
                                                                threads=2), _line(3.0, "b", 2)])
    late = dataclasses.replace(frame, completed_s=frame.completed_s + 0.02)
    frames = {"table": frame, "static:a": late, "static:b": frame}
    sweep = deadline_sweep(frames, ACC, "declared", [20, 60, 100, 200, 400])
    check = SimCheck("table", 0.6, 0.625, 120.0, 147.5, replayed=Replay(0.62, 140.0))
    return [
        figures.plot_switching_trace(offered_load(frame),
                                     {"table": segments_from_control(trace),
                                      "queue-aware": segments_from_records(frame)},
                                     ACC, tmp_path / "switching_trace.png"),
        figures.plot_accuracy_vs_deadline(sweep, ACC, tmp_path / "accuracy_vs_deadline.png", D),
        figures.plot_latency_cdf(frames, D, ACC, tmp_path / "latency_cdf.png"),
        figures.plot_sim_vs_measured([check], ACC, tmp_path / "sim_vs_measured.png"),
    ]


def test_figures_are_png(tmp_path: Path, frame: RecordFrame) -> None:
    for path in _figures(tmp_path, frame):
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG), path


def test_html_report_is_self_contained(tmp_path: Path, frame: RecordFrame) -> None:
    pols = _summaries(frame)
    sim = {"table": PolicySummary(0.45, 0.70, 80.0, 120.0, 8, 2, 4)}
    replayed = {"table": PolicySummary(0.45, 0.64, 80.0, 145.0, 8, 2, 4)}
    doc = build_summary(D, "labels", pols, None, sim, {"note": "<hand-made>"}, replayed)
    figs = _figures(tmp_path / "figs", frame)
    path = write_report(tmp_path / "out", doc, figs,
                        {"pool": "a, b", "workload": "hand-made", "duration_s": 4.0,
                         "machine": {"cpu": "test", "cores": 2}})
    html = path.read_text()
    assert path.name == "report.html"
    assert "http://" not in html and "https://" not in html
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in html and "<script" not in html
    for name in ("table", "queue-aware", "static:a"):
        assert f"<tr><td>{name}</td>" in html
    assert "oracle (upper bound, computed in the simulator)" in html
    assert "answered on time and correct" in html  # the labels basis sentence
    assert '<td class="fail">fail</td>' in html  # on time 0.70 vs 0.625: off by 0.075
    assert "<th>why off</th>" in html and "shed live" in html  # 2 of 8 simulated shed
    assert "Replayed with each run's own service times: 1 of 1 within both." in html
    assert "&lt;hand-made&gt;" in html  # notes escaped
    assert "hand-made" in html and "cpu: test" in html


def test_reports_never_import_serving_or_a_web_library() -> None:
    forbidden = ("gearshift.serving", "starlette", "uvicorn", "httpx", "fastapi", "aiohttp")
    root = Path(__file__).parents[1] / "src" / "gearshift" / "reports"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(forbidden)], path
