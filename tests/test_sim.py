"""Simulator: the kernel by hand, queueing theory (M/M/1, M/D/1, M/M/c), drop at dispatch, the
period loop against the one-shot path, switching semantics, observations, determinism, CSV."""

from __future__ import annotations

import csv
import math
from dataclasses import fields

import numpy as np
import pytest

from gearshift.control.policies import SchedulePolicy, StaticPolicy
from gearshift.policy import Controller, ServiceTimes
from gearshift.profiling.profile import LoadOverhead
from gearshift.sim.kernel import run_fcfs
from gearshift.sim.oracle import oracle_schedule
from gearshift.sim.sampling import RequestDraws, ServiceSampler, offered_rate_rps
from gearshift.sim.simulator import SimSettings, serve_fixed, simulate, simulate_fixed
from gearshift.types import Allocation, Decision, DropRule, RequestRecord, safe_quantiles
from tests.synthetic import constant_ms, exponential_ms, make_profile

A1, A2, A4 = Allocation(1, 1), Allocation(2, 1), Allocation(4, 1)
A12 = Allocation(1, 2)
NO_DEADLINE_MS = 1e12


def poisson(rate_rps: float, n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate_rps, n))


def erlang_c_wait_s(rate_rps: float, service_rps: float, c: int) -> float:
    """Mean wait in queue of M/M/c (Erlang C)."""
    a = rate_rps / service_rps
    tail = a**c / math.factorial(c) * c / (c - a)
    p_wait = tail / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return p_wait / (c * service_rps - rate_rps)


# --- kernel ---------------------------------------------------------------------------------


def test_kernel_two_servers_by_hand() -> None:
    arrivals = np.array([0.0, 0.0, 0.0, 1.0, 5.0])
    service = np.array([2.0, 3.0, 1.0, 1.0, 1.0])
    res = run_fcfs(arrivals, service, 2)
    np.testing.assert_allclose(res.start_s, [0, 0, 2, 3, 5])
    np.testing.assert_allclose(res.end_s, [2, 3, 3, 4, 6])
    assert res.n_done == 5 and res.served.all()
    np.testing.assert_allclose(sorted(res.free_s), [4, 6])


def test_kernel_drops_at_dispatch_without_using_the_server() -> None:
    arrivals = np.array([0.0, 0.1, 0.2, 0.3])
    service = np.array([1.0, 1.0, 1.0, 1.0])
    deadlines = np.array([10.0, 0.5, 0.9, 10.0])  # 2nd and 3rd expire while the 1st is served
    res = run_fcfs(arrivals, service, 1, deadlines)
    assert res.served.tolist() == [True, False, False, True]
    np.testing.assert_allclose(res.start_s, [0.0, 1.0, 1.0, 1.0])  # drops at dispatch time
    assert np.isnan(res.end_s[1]) and res.end_s[3] == 2.0


def test_kernel_falls_back_down_the_ladder_then_drops() -> None:
    arrivals = np.array([0.0, 0.1, 0.2, 0.3])
    service = np.array([[1.0, 0.2]] * 4)  # column 0: the variant in force, 1: its fallback
    deadlines = arrivals + np.array([1.5, 1.5, 1.5, 0.5])
    res = run_fcfs(arrivals, service, 1, deadlines, slack_s=np.array([1.0, 0.2]))
    # 0 finds the server free: column 0; 1 and 2 would overrun with column 0 (start + 1.0 s);
    # 3 is past its deadline when the server frees up
    assert res.choice.tolist() == [0, 1, 1, -1]
    np.testing.assert_allclose(res.end_s[:3], [1.0, 1.2, 1.4])
    assert res.served.tolist() == [True, True, True, False]


def test_kernel_horizon_resumes_exactly() -> None:
    arrivals = poisson(90.0, 5000, seed=3)
    service = np.random.default_rng(4).exponential(0.01, 5000)
    deadlines = arrivals + 0.05
    whole = run_fcfs(arrivals, service, 2, deadlines)
    first = run_fcfs(arrivals, service, 2, deadlines, horizon_s=20.0)
    assert 0 < first.n_done < 5000 and np.all(first.start_s[: first.n_done] < 20.0)
    k = first.n_done
    rest = run_fcfs(arrivals[k:], service[k:], first.free_s, deadlines[k:])
    np.testing.assert_array_equal(np.r_[first.start_s[:k], rest.start_s], whole.start_s)
    np.testing.assert_array_equal(np.r_[first.end_s[:k], rest.end_s], whole.end_s)


# --- queueing theory --------------------------------------------------------------------------

N_LONG = 2_000_000


@pytest.mark.parametrize(
    ("name", "samples_ms", "alloc", "rate_rps", "expected_wait_s"),
    [
        ("M/M/1", exponential_ms(10.0), A1, 70.0, 0.7 / (100.0 - 70.0)),
        ("M/D/1", constant_ms(10.0), A1, 70.0, 0.7 / (2 * 100.0 * (1 - 0.7))),  # P-K, Cs^2 = 0
        ("M/M/4", exponential_ms(40.0), A4, 75.0, erlang_c_wait_s(75.0, 25.0, 4)),
    ],
)
def test_mean_wait_matches_theory(name: str, samples_ms: list[float], alloc: Allocation,
                                  rate_rps: float, expected_wait_s: float) -> None:
    profile = make_profile({("m", alloc): samples_ms}, {"m": 0.7})
    cols = simulate_fixed(profile, "m", alloc, poisson(rate_rps, N_LONG, seed=11),
                          NO_DEADLINE_MS, seed=12)
    assert np.all(cols.answered)
    wait_s = float(np.mean(cols.queue_ms)) / 1000.0
    assert wait_s == pytest.approx(expected_wait_s, rel=0.03), name


def test_latency_is_wait_plus_service_plus_overhead() -> None:
    profile = make_profile({("m", A1): exponential_ms(10.0)}, {"m": 0.7},
                           overhead_ms=[1.0, 2.0, 3.0, 6.0])
    cols = simulate_fixed(profile, "m", A1, poisson(50.0, 200_000, 1), NO_DEADLINE_MS, seed=2)
    overhead_ms = cols.latency_ms - cols.queue_ms - cols.service_ms
    assert set(np.round(overhead_ms, 6)) == {1.0, 2.0, 3.0, 6.0}
    assert float(np.mean(overhead_ms)) == pytest.approx(3.0, rel=0.02)
    assert float(np.mean(cols.service_ms)) == pytest.approx(10.0, rel=0.01)


def test_a_replica_is_held_beyond_service_at_the_profiles_throughput() -> None:
    """10 ms of service at 1000 / 15 requests/s saturated: the replica is held 5 ms a request
    besides, so it queues as M/D/1 of 15 ms (Pollaczek-Khinchine) and answers at most 66.7
    requests/s, while a request's service and latency count its 10 ms alone; a path-bound
    entry is held for nothing (its throughput is the HTTP path's)."""
    base = make_profile({("m", A1): constant_ms(10.0)}, {"m": 0.7})
    entry = base.entries[0].model_copy(update={"throughput_rps": 1000.0 / 15.0})
    profile = base.model_copy(update={"entries": [entry]})
    assert entry.hold_ms() == pytest.approx(5.0)
    cols = simulate_fixed(profile, "m", A1, poisson(40.0, N_LONG, seed=11), NO_DEADLINE_MS,
                          seed=12)
    assert np.allclose(cols.service_ms, 10.0)
    assert np.allclose(cols.latency_ms, cols.queue_ms + 10.0)
    rho = 40.0 * 0.015
    assert float(np.mean(cols.queue_ms)) / 1000.0 == pytest.approx(
        rho * 0.015 / (2 * (1 - rho)), rel=0.03)
    flood = simulate_fixed(profile, "m", A1, np.linspace(0.0, 1.0, 200), NO_DEADLINE_MS, seed=1)
    assert float(np.max(flood.completed_s)) == pytest.approx(200 * 0.015 - 0.005, rel=1e-6)
    assert entry.model_copy(update={"path_bound": True}).hold_ms() == 0.0


def test_a_request_that_waited_gets_the_busy_overhead() -> None:
    """Dispatched at once: an idle-path sample; after waiting for a replica: a busy one; and
    the dispatch rule counts the busy mean (it judges waiting requests only)."""
    profile = make_profile({("m", A1): constant_ms(10.0)}, {"m": 0.7}, overhead_ms=[1.0, 2.0])
    profile = profile.model_copy(update={"overhead_busy_ms": [5.0, 7.0]})
    arrivals = np.array([0.0, 0.001, 0.1, 0.2, 0.2005])  # 2nd and 5th wait behind another
    cols = simulate_fixed(profile, "m", A1, arrivals, NO_DEADLINE_MS, seed=3)
    overhead_ms = np.round(cols.latency_ms - cols.queue_ms - cols.service_ms, 6)
    waited = cols.queue_ms >= 1.0
    assert waited.tolist() == [False, True, False, False, True]
    assert set(overhead_ms[waited]) <= {5.0, 7.0}
    assert set(overhead_ms[~waited]) <= {1.0, 2.0}
    assert profile.dispatch_overhead_ms() == pytest.approx(6.0)
    assert ServiceSampler.from_profile(profile).dispatch_overhead_ms == pytest.approx(6.0)
    # 10 ms of service + 6 ms of overhead leaves 4 ms of queueing for a 20 ms deadline
    late = simulate_fixed(profile, "m", A1, np.array([0.0, 0.005, 0.0055]), 20.0, seed=3)
    assert late.answered.tolist() == [True, False, False]


# --- drop at dispatch, overload -------------------------------------------------------------


@pytest.mark.parametrize(("drop", "margin_ms"), [("expired", 0.0), ("hopeless", 10.0)])
def test_overload_drops_requests_that_cannot_make_it(drop: DropRule, margin_ms: float) -> None:
    """expired: dropped once queued past the deadline; hopeless: once queued past the deadline
    less the mean service time (10 ms), so every answered request is on time."""
    profile = make_profile({("m", A1): constant_ms(10.0)}, {"m": 0.7})
    cols = simulate_fixed(profile, "m", A1, poisson(150.0, 30_000, 5), 50.0, seed=6, drop=drop)
    dropped = ~cols.answered
    assert 0.25 < dropped.mean() < 0.45  # capacity 100 of 150 requests/s offered
    assert np.all(cols.queue_ms[cols.answered] <= 50.0 - margin_ms + 1e-9)
    assert np.all(cols.queue_ms[dropped] > 50.0 - margin_ms)
    if drop == "hopeless":
        assert np.all(cols.on_time[cols.answered])
    assert np.all(cols.status[dropped] == 504) and not np.any(cols.on_time[dropped])
    assert np.all(cols.variant_code[dropped] == -1)


# --- the period loop --------------------------------------------------------------------------


def test_static_loop_equals_one_shot_run() -> None:
    profile = make_profile({("m", A2): exponential_ms(25.0)}, {"m": 0.7},
                           overhead_ms=[0.5, 1.5])
    arrivals = poisson(85.0, 20_000, seed=7)  # near capacity: queues cross period boundaries
    fixed = simulate_fixed(profile, "m", A2, arrivals, 120.0, seed=8)
    decision = Decision("m", A2)
    looped = simulate(profile, Controller(StaticPolicy(decision)), arrivals, 120.0, decision, 8)
    for f in ("completed_s", "status", "queue_ms", "service_ms", "variant_code"):
        np.testing.assert_array_equal(getattr(looped.columns, f), getattr(fixed, f), err_msg=f)
    assert (~fixed.answered).any()


def two_variant_profile() -> object:
    samples = {("slow", A1): constant_ms(125.0), ("fast", A1): constant_ms(10.0),
               ("slow", A4): constant_ms(125.0), ("fast", A4): constant_ms(10.0)}
    return make_profile(samples, {"slow": 0.9, "fast": 0.6})


def test_variant_switch_applies_to_requests_dispatched_after_it() -> None:
    profile = two_variant_profile()
    arrivals = np.linspace(0.0, 0.95, 20)  # 20 requests, 2.5 s of slow work
    schedule = SchedulePolicy((Decision("slow", A1), Decision("fast", A1)))
    res = simulate(profile, Controller(schedule), arrivals, 10_000.0, Decision("slow", A1), 0)
    cols = res.columns
    dispatch_s = cols.arrival_s + cols.queue_ms / 1000.0
    names = cols.variant_names()
    assert np.all(names[dispatch_s < 1.0] == "slow") and np.all(names[dispatch_s >= 1.0] == "fast")
    assert (dispatch_s < 1.0).sum() == 8  # 0, 0.125, ..., 0.875 started on the slow variant
    assert cols.arrival_s[dispatch_s >= 1.0].min() < 1.0  # queued before the switch, served fast
    first = res.observations[0]
    assert (first.arrivals, first.queue_length, first.completed) == (20, 12, 7)
    quarters = [int(np.count_nonzero((arrivals >= q / 4) & (arrivals < (q + 1) / 4)))
                for q in range(4)]
    assert first.arrival_parts == tuple(quarters) and sum(quarters) == 20
    assert first.current == Decision("slow", A1) and res.observations[1].current.variant == "fast"
    # the service times of the period's dispatches, per (variant, threads): 8 x 125 ms of slow
    assert first.service == (ServiceTimes("slow", A1.threads, 8, pytest.approx(1000.0)),)
    assert {x.variant for x in res.observations[1].service} == {"fast"}


def test_reallocation_delay_keeps_old_replicas_serving_until_new_ones_are_up() -> None:
    profile = two_variant_profile()
    arrivals = np.linspace(0.0, 3.0, 301)  # 100 requests/s of 125 ms work: 1 replica saturates
    schedule = SchedulePolicy((Decision("slow", A1), Decision("slow", A4)))
    settings = SimSettings(realloc_delay_s=0.5)
    res = simulate(profile, Controller(schedule), arrivals, 10_000.0, Decision("slow", A1), 0,
                   settings)
    cols = res.columns
    start = cols.arrival_s + cols.queue_ms / 1000.0
    before = start[start < 1.5]
    assert np.all(np.diff(before) >= 0.125 - 1e-9)  # one replica until 1.5 s
    after = start[(start >= 1.5) & (start < 1.6)]
    assert len(after) == 4  # then four at once
    assert res.observations[1].current.allocation == A4  # in force at t = 2 s


def test_observations_account_for_every_request() -> None:
    profile = make_profile({("m", A1): exponential_ms(12.0)}, {"m": 0.7})
    arrivals = poisson(95.0, 6000, seed=9)
    decision = Decision("m", A1)
    res = simulate(profile, Controller(StaticPolicy(decision)), arrivals, 60.0, decision, 3)
    obs = res.observations
    cols = res.columns
    late = cols.answered & ~cols.on_time
    assert len(res.decisions) == len(obs) - 1
    assert obs[-1].queue_length == obs[-1].in_flight == 0
    assert sum(o.arrivals for o in obs) == len(cols)
    assert sum(o.completed for o in obs) == int(np.count_nonzero(cols.answered))
    assert sum(o.missed for o in obs) == int(np.count_nonzero(late | ~cols.answered))
    assert all(o.queue_length >= 0 and 0 <= o.in_flight <= 1 for o in obs)
    busy = [o for o in obs if o.completed]
    assert all(o.latency_p99_ms > 0 for o in busy)


def test_same_seed_same_records_and_different_seed_differs() -> None:
    profile = make_profile({("m", A2): exponential_ms(20.0)}, {"m": 0.7}, overhead_ms=[1.0, 2.0])
    arrivals = poisson(80.0, 5000, seed=1)
    decision = Decision("m", A2)

    def run(seed: int) -> np.ndarray:
        res = simulate(profile, Controller(StaticPolicy(decision)), arrivals, 80.0, decision, seed)
        return res.columns.completed_s

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_records_and_csv_use_request_record_fields(tmp_path: object) -> None:
    profile = make_profile({("m", A1): constant_ms(10.0)}, {"m": 0.7})
    cols = simulate_fixed(profile, "m", A1, poisson(150.0, 500, 2), 30.0, seed=1)
    records = cols.to_records()
    assert len(records) == 500 and all(isinstance(r, RequestRecord) for r in records)
    for r in records:
        assert r.scheduled_s == r.sent_s and r.correct is None
        assert r.on_time == (r.status == 200 and r.latency_ms <= r.deadline_ms)
        assert (r.variant == "m") == (r.status == 200)
    path = cols.write_csv(tmp_path / "records.csv")  # type: ignore[operator]
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [f.name for f in fields(RequestRecord)]
    assert len(rows) == 500 and float(rows[7]["completed_s"]) == records[7].completed_s


def test_oracle_follows_load_and_beats_static_choices() -> None:
    profile = two_variant_profile()
    low, high = poisson(5.0, 100, seed=1), poisson(60.0, 1200, seed=2)
    arrivals = np.concatenate([low[low < 10], 10 + high[high < 10], 20 + low[low < 10]])
    deadline_ms = 300.0
    oracle = oracle_schedule(profile, arrivals, deadline_ms, seed=4)
    picks = [d.variant for d in oracle.decisions]
    assert picks[2:9].count("slow") >= 6 and picks[11:19].count("fast") >= 7
    accuracy = profile.accuracy
    replay = simulate(profile, Controller(SchedulePolicy(oracle.decisions)), arrivals,
                      deadline_ms, oracle.decisions[0], seed=4)
    best_static = max(
        simulate_fixed(profile, e.variant, e.allocation, arrivals, deadline_ms, 4)
        .effective_accuracy(accuracy)
        for e in profile.entries
    )
    assert replay.columns.effective_accuracy(accuracy) > best_static


def test_new_replicas_wait_for_the_old_ones_on_their_cores() -> None:
    from gearshift.sim.engine import Answering, Servers, SimState, apply_decision

    def state(alloc: Allocation, free: list[float]) -> SimState:
        return SimState(0, "m", Servers(alloc, np.array(free)), Answering.none())

    to_one = apply_decision(state(A2, [1.5, 1.2]), Decision("m", A12), 1.0, 0.0)
    assert to_one.servers.allocation == A12
    assert list(to_one.servers.free_s) == [1.5]  # both cores busy until 1.5
    to_two = apply_decision(state(A12, [1.4]), Decision("m", A2), 1.0, 0.0)
    assert list(to_two.servers.free_s) == [1.4, 1.4]
    idle = apply_decision(state(A2, [0.2, 0.3]), Decision("m", A12), 1.0, 0.0)
    assert list(idle.servers.free_s) == [1.0]


def test_the_one_rule_for_what_a_new_replica_waits_for() -> None:
    """`cores.sharing_cores`, which the live pool's admission and the simulator's swap both use:
    a new replica waits for exactly the old replicas that share a core with it."""
    from gearshift.cores import Slot, assign_slots, sharing_cores

    two = assign_slots(2, 1, [0, 1])  # cores (0,) and (1,)
    one = assign_slots(1, 2, [0, 1])  # cores (0, 1)
    assert sharing_cores(one[0], two) == [0, 1]
    assert [sharing_cores(s, one) for s in two] == [[0], [0]]
    assert sharing_cores(two[0], two) == [0] and sharing_cores(two[1], two) == [1]
    assert sharing_cores(Slot(1, (3,)), two) == [] and sharing_cores(one[0], []) == []


def test_the_one_ladder_rule() -> None:
    """`dispatch.ladder`, which the live pool and the simulator both build their rungs with."""
    from gearshift.dispatch import ladder

    assert ladder("l", ("m", "s"), hopeless=True) == (("l", "m", "s"), 0)
    assert ladder("l", ("m", "s"), hopeless=False) == (("l",), 0)
    assert ladder("l", ("m", "s"), True, lambda v: v != "m") == (("l", "s"), 0)
    assert ladder("l", (), True) == (("l",), 0)
    # upgrades come first, most accurate first, and the index says where the variant is
    assert ladder("m", ("s",), True, upgrades=("x", "l")) == (("x", "l", "m", "s"), 2)
    assert ladder("m", ("s",), True, lambda v: v != "x", ("x", "l")) == (("l", "m", "s"), 1)
    assert ladder("m", ("s",), False, upgrades=("l",)) == (("m",), 0)


# --- fallbacks: how sure a dispatch must be -------------------------------------------------


def test_safe_quantiles_weigh_a_miss_against_the_next_variants_accuracy() -> None:
    assert safe_quantiles([0.761, 0.733, 0.698]) == pytest.approx(
        (0.733 / 0.761, 0.698 / 0.733, 0.9))
    assert safe_quantiles([0.9, 0.5]) == (0.9, 0.9)  # never below SAFE_QUANTILE
    assert safe_quantiles([0.8, 0.8]) == (0.99, 0.9)  # nor above MAX_SAFE_QUANTILE
    assert safe_quantiles([0.7]) == (0.9,) and safe_quantiles([]) == ()


@pytest.mark.parametrize(("heavy_accuracy", "heavy_share"), [(0.80, 0.0), (0.95, 0.92)])
def test_a_close_fallback_takes_what_the_variant_would_make_only_usually(
        heavy_accuracy: float, heavy_share: float) -> None:
    """heavy takes 40 ms 92 % of the time, 120 ms otherwise; light 10 ms (accuracy 0.78). A
    request queued behind one heavy request has ~110 ms left of 150: heavy makes it with
    probability 0.92. Worth it against light only if 0.92 x heavy's accuracy beats 0.78."""
    profile = make_profile(
        {("heavy", A1): [40.0] * 920 + [120.0] * 80, ("light", A1): constant_ms(10.0)},
        {"heavy": heavy_accuracy, "light": 0.78}, cores=1)
    arrivals = np.repeat(np.arange(50.0), 2)  # pairs: one served at once, one queued behind
    cols = serve_fixed(ServiceSampler.from_profile(profile), "heavy", A1, arrivals, 150.0,
                       RequestDraws.draw(len(arrivals), 7), fallbacks=("light",))
    queued = cols.variant_code[1::2]
    assert np.all(cols.variant_code[0::2] == cols.variants.index("heavy"))
    assert np.all(queued >= 0)  # every queued request is answered, by one or the other
    share = float(np.mean(queued == cols.variants.index("heavy")))
    assert share == pytest.approx(heavy_share, abs=0.08)
    # each answer says what its variant was to the decision in force, as the pool's do
    roles = cols.served_as_names()
    heavy = cols.variant_names() == "heavy"
    assert set(roles[heavy]) == {"in_force"} and set(roles[~heavy]) <= {"fallback"}
    assert [r.served_as for r in cols.to_records()] == list(roles)


def test_a_simulated_upgrade_is_marked_as_one() -> None:
    """light in force with heavy as its upgrade: requests a second apart find a replica free
    with time to spare and are upgraded, and so is a burst's first; those queued behind it
    are served by light."""
    profile = make_profile({("heavy", A1): constant_ms(20.0), ("light", A1): constant_ms(5.0)},
                           {"heavy": 0.9, "light": 0.7}, cores=1)
    arrivals = np.concatenate([np.arange(5.0), 10.0 + np.arange(4) / 1000.0])
    cols = serve_fixed(ServiceSampler.from_profile(profile), "light", A1, arrivals, 500.0,
                       RequestDraws.draw(len(arrivals), 3), upgrades=("heavy",))
    roles = list(cols.served_as_names())
    assert roles[:5] == ["upgrade"] * 5 and list(cols.variant_names()[:5]) == ["heavy"] * 5
    assert roles[5:] == ["upgrade"] + ["in_force"] * 3


def test_a_path_bound_entry_draws_its_overhead_at_the_load_its_rate_gives() -> None:
    """A path-bound entry gives each request a sample of the measured load nearest the
    utilization its rate (arrivals of the last second) gives with that entry, mixing the two
    around it in proportion; a heavier entry puts more load on the cores at the same rate;
    past the entry's throughput a request also waits for the excess to drain; an entry not
    path-bound keeps the profile's overhead."""
    profile = make_profile({("l", A1): constant_ms(1.0), ("s", A1): constant_ms(1.0),
                            ("m", A1): constant_ms(1.0)},
                           {"l": 0.9, "s": 0.8, "m": 0.85}, overhead_ms=[1.0, 2.0], cores=1)
    entries = [e.model_copy(update={"path_bound": e.variant != "m",
                                    "service_ms": [3.0] if e.variant == "l" else [1.0]})
               for e in profile.entries]
    profile = profile.model_copy(update={
        "entries": entries, "frontend_cpu_ms": 1.0, "overhead_by_load": [
            LoadOverhead(utilization=0.1, samples_ms=[3.0]),
            LoadOverhead(utilization=0.3, samples_ms=[8.0])]})

    def overhead_ms(variant: str, rate_rps: float) -> np.ndarray:
        arrivals = np.arange(int(rate_rps * 20)) / rate_rps  # 20 s at a steady rate
        cols = simulate_fixed(profile, variant, A1, arrivals, NO_DEADLINE_MS, seed=4)
        steady = cols.arrival_s >= 1.0  # a full second of arrivals behind each
        return np.round(cols.latency_ms - cols.queue_ms - cols.service_ms, 6)[steady]

    assert set(overhead_ms("s", 25.0)) == {3.0}  # 25 x 2 ms: 0.05, below the lowest
    assert set(overhead_ms("s", 200.0)) == {8.0}  # 0.4: above the highest
    assert float(np.mean(overhead_ms("s", 125.0) == 8.0)) == pytest.approx(0.75, abs=0.03)
    assert set(overhead_ms("l", 75.0)) == {8.0}  # 75 x 4 ms: 0.3, the same rate heavier
    assert set(overhead_ms("m", 125.0)) == {1.0, 2.0}
    # past the entry's throughput (1,000 req/s): the backlog a second of the excess leaves
    over = overhead_ms("s", 1250.0)
    assert np.all((over >= 8.0 + 250.0) & (over <= 8.0 + 251.0))  # 1,250-1,251 in a second
    assert offered_rate_rps(np.array([0.0, 0.5, 0.9, 1.6])).tolist() == [1.0, 2.0, 3.0, 2.0]


def test_a_waiting_request_on_a_path_bound_entry_is_judged_by_the_path_cost_at_the_load(
        ) -> None:
    """At dispatch the rule counts, for a path-bound entry in force, the path's median cost at
    the offered rate (`Profile.path_overheads`), as the live pool does, not the busy mean
    over every load: a request that waited 2 ms for a replica with 8 ms left is served after
    a quiet spell (the path's median there 2 ms; its mean, 11.3, is a tail's) and dropped
    after two seconds at 450 requests/s (0.9 of the core: 20 ms); the busy mean, 9 ms, would
    drop it after both."""
    profile = make_profile({("p", A1): constant_ms(2.0)}, {"p": 0.9}, overhead_ms=[2.0],
                           cores=1)
    profile = profile.model_copy(update={
        "overhead_busy_ms": [9.0],
        "entries": [e.model_copy(update={"path_bound": True}) for e in profile.entries],
        "overhead_by_load": [LoadOverhead(utilization=0.1, samples_ms=[2.0, 2.0, 30.0]),
                             LoadOverhead(utilization=0.9, samples_ms=[20.0])]})
    pair = np.array([10.0, 10.0])  # the second waits 2 ms behind the first
    quiet = simulate_fixed(profile, "p", A1, pair, 10.0, seed=5)
    assert quiet.answered.tolist() == [True, True]
    busy = np.concatenate([8.0 + np.arange(900) / 450.0, pair])  # no wait: 2.2 ms apart
    loaded = simulate_fixed(profile, "p", A1, busy, 10.0, seed=5)
    assert loaded.answered.tolist() == [True] * 901 + [False]
