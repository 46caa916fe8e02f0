"""A live run's service times carried into the simulator (`experiment.replay`)."""

from __future__ import annotations

import numpy as np
import pytest

from gearshift.experiment.replay import MIN_ANSWERS, replay_profile, service_ratios
from gearshift.reports.frame import RecordFrame
from gearshift.types import Allocation
from tests.synthetic import make_profile

A21, A12 = Allocation(2, 1), Allocation(1, 2)


def frame(served: dict[str, list[float]]) -> RecordFrame:
    """Answered requests, one per service time, by variant."""
    variant = np.array([v for v, times in served.items() for _ in times], dtype=object)
    service = np.array([t for times in served.values() for t in times], dtype=np.float64)
    n = len(service)
    zeros = np.zeros(n)
    return RecordFrame(
        request_id=np.arange(n), scheduled_s=zeros, sent_s=zeros, completed_s=zeros + 0.1,
        status=np.full(n, 200), variant=variant, queue_ms=zeros, service_ms=service,
        deadline_ms=np.full(n, 100.0), on_time=np.ones(n, dtype=bool),
        correct=np.full(n, np.nan), error=np.array([""] * n, dtype=object),
        served_as=np.array(["in_force"] * n, dtype=object))


def test_a_variants_service_times_take_the_live_runs_mean_and_tail_on_every_allocation() -> None:
    """The twin drew `a` from its profile (10-20 ms); the live replicas took 1.5 x that, and
    3 x in their slowest 5 % (a stall). Both of `a`'s entries are mapped quantile by quantile,
    their throughput down by their mean's rise; `b`, answered only 5 times live, stays as
    profiled."""
    base = np.linspace(10.0, 20.0, 400)
    profile = make_profile({("a", A21): base.tolist(), ("a", A12): (base * 0.6).tolist(),
                            ("b", A21): base.tolist()}, {"a": 0.8, "b": 0.7}, cores=2)
    lived = np.where(base >= np.percentile(base, 95), 3.0, 1.5) * base
    twin = frame({"a": base.tolist(), "b": base[:50].tolist()})
    live = frame({"a": lived.tolist(), "b": base[: MIN_ANSWERS // 4].tolist()})
    assert set(service_ratios(live, twin)) == {"a"}
    replayed = replay_profile(profile, live, twin)
    a21, a12, b21 = (replayed.entry(v, a) for v, a in (("a", A21), ("a", A12), ("b", A21)))
    for before, after in ((base, a21.service_ms), (base * 0.6, a12.service_ms)):
        after = np.asarray(after)
        assert np.median(after) == pytest.approx(1.5 * np.median(before), rel=0.01)
        assert np.percentile(after, 99) == pytest.approx(3.0 * np.percentile(before, 99),
                                                         rel=0.02)
    old = profile.entry("a", A21)
    assert a21.throughput_rps == pytest.approx(
        old.throughput_rps * np.mean(base) / np.mean(a21.service_ms))
    assert b21.service_ms == profile.entry("b", A21).service_ms


def test_a_path_bound_entry_keeps_the_paths_capacity_less_what_its_service_adds() -> None:
    """fnet-like: 0.2 ms of service on one thread behind a 1 ms front end per request, the
    entry answering 1,600 req/s (the HTTP path's). Served 1.5 x slower live, a request takes
    1.1 ms of core time instead of 1.0: the entry's capacity goes down by that, 1/1.1, not
    by the service's 1/1.5."""
    base = np.full(200, 0.2)
    profile = make_profile({("a", A21): base.tolist()}, {"a": 0.9}, cores=2)
    entry = profile.entry("a", A21).model_copy(update={"path_bound": True,
                                                       "throughput_rps": 1600.0})
    profile = profile.model_copy(update={"entries": [entry], "frontend_cpu_ms": 0.8})
    assert profile.core_ms(entry) == pytest.approx(1.0)
    replayed = replay_profile(profile, frame({"a": (base * 1.5).tolist()}),
                              frame({"a": base.tolist()})).entry("a", A21)
    assert np.mean(replayed.service_ms) == pytest.approx(0.3)
    assert replayed.throughput_rps == pytest.approx(1600.0 / 1.1)


def test_one_stall_in_a_long_run_does_not_become_the_top_sample_of_a_short_profile() -> None:
    """45 profiled samples stand for 1/45 of the draws each. A live run of 700 whose one
    slowest request stalled at 4 x its twin's slowest is as profiled below its 99.9th
    percentile: the top sample (the 98.9th percentile) keeps its time, where mapped to the
    100th it took the stall's 4 x and made 2.2 % of the replay's draws stalls."""
    profile = make_profile({("a", A21): np.linspace(18.0, 22.0, 45).tolist()}, {"a": 0.7},
                           cores=2)
    twin = np.random.default_rng(1).uniform(18.0, 22.0, 700)
    live = twin.copy()
    live[np.argmax(live)] *= 4.0
    replayed = replay_profile(profile, frame({"a": live.tolist()}), frame({"a": twin.tolist()}))
    assert max(replayed.entry("a", A21).service_ms) < 22.0 * 1.05
