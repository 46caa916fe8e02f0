"""Arrival processes and the workload syntax: rates, Markov dwell, determinism, replays, errors."""

from __future__ import annotations

import bz2
import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from gearshift.errors import SpecError
from gearshift.loadgen.arrivals import (
    MarkovSpec,
    RateTimeline,
    counts_timeline,
    default_markov,
    markov_arrivals,
    markov_states,
    markov_timeline,
    piecewise_poisson_arrivals,
    poisson_arrivals,
    read_arrival_file,
    read_counts,
    read_timestamps,
    spike_arrivals,
    spike_timeline,
    step_arrivals,
    step_timeline,
    trace_arrivals,
)
from gearshift.loadgen.workload import (
    ACCEPTED_FORMS,
    MarkovWorkload,
    PoissonWorkload,
    TraceWorkload,
    parse_workload,
)

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"  # ../shared beside the repo
TWITTER = TRACES / "twitter_per_second.txt.bz2"
AZURE = TRACES / "azure_llm_conv_2023.csv.gz"


def assert_valid(arrivals: np.ndarray, duration_s: float) -> None:
    assert arrivals.dtype == np.float64
    assert np.all(np.diff(arrivals) >= 0)
    assert arrivals.size == 0 or (arrivals[0] >= 0 and arrivals[-1] < duration_s)


def within_sigma(count: int, expected: float, k: float = 3.0) -> bool:
    return abs(count - expected) <= k * np.sqrt(expected)


@pytest.fixture
def counts_file(tmp_path: Path) -> Path:
    path = tmp_path / "counts.txt"
    path.write_text("\n".join(str(c) for c in [10, 20, 30, 40] * 100) + "\n")
    return path


# --- Poisson, steps, spikes ---------------------------------------------------------------------


def test_poisson_rate_and_cv() -> None:
    rate_rps, duration_s = 50.0, 200.0
    a = poisson_arrivals(rate_rps, duration_s, seed=1)
    assert_valid(a, duration_s)
    assert within_sigma(a.size, rate_rps * duration_s)
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(1 / rate_rps, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_step_timeline_cycles_and_rates() -> None:
    tl = step_timeline([5, 20, 10], 30.0, 200.0)
    assert tl.times_s.tolist() == [0, 30, 60, 90, 120, 150, 180]
    assert tl.rates_rps.tolist() == [5, 20, 10, 5, 20, 10, 5]
    a = parse_workload("step:5,20,10@30").arrivals(90.0, seed=3)
    assert np.array_equal(a, step_arrivals([5, 20, 10], 30.0, 90.0, seed=3))
    for start, rate in [(0, 5), (30, 20), (60, 10)]:
        n = int(((a >= start) & (a < start + 30)).sum())
        assert within_sigma(n, rate * 30, k=4)


def test_spike_timeline_and_counts() -> None:
    tl = spike_timeline(5, 100, 20, 10, 60)
    assert tl.times_s.tolist() == [0, 20, 30]
    assert tl.rates_rps.tolist() == [5, 100, 5]
    assert spike_timeline(5, 100, 0, 10, 60).rates_rps.tolist() == [100, 5]
    assert spike_timeline(5, 100, 70, 10, 60).times_s.tolist() == [0]
    a = spike_arrivals(5, 100, 20, 10, 60, seed=0)
    assert np.array_equal(a, piecewise_poisson_arrivals(tl, 60, seed=0))
    assert within_sigma(int(((a >= 20) & (a < 30)).sum()), 1000)
    assert within_sigma(int((a < 20).sum()), 100, k=4)


# --- Markov-modulated Poisson -------------------------------------------------------------------


def test_markov_dwell_and_deterministic_path() -> None:
    cycle = MarkovSpec((1.0, 2.0, 3.0), ((0, 1, 0), (0, 0, 1), (1, 0, 0)), dwell_s=7.0)
    tl = markov_timeline(cycle, 50.0, seed=0)
    assert tl.times_s.tolist() == [0, 7, 14, 21, 28, 35, 42, 49]
    assert tl.rates_rps.tolist() == [1, 2, 3, 1, 2, 3, 1, 2]


def test_markov_timeline_is_the_load_behind_the_arrivals() -> None:
    # On/off chain: arrivals may only fall in the "on" periods of the returned timeline.
    spec = MarkovSpec((0.0, 200.0), ((0.5, 0.5), (0.5, 0.5)), dwell_s=2.0)
    tl = markov_timeline(spec, 200.0, seed=11)
    a = markov_arrivals(spec, 200.0, seed=11)
    assert_valid(a, 200.0)
    period_rate = tl.rates_rps[(a // spec.dwell_s).astype(int)]
    assert np.all(period_rate == 200.0)
    assert within_sigma(a.size, float((tl.rates_rps * spec.dwell_s).sum()))


def test_default_markov_shape_and_transitions() -> None:
    spec = default_markov(20.0)
    rates = np.asarray(spec.rates_rps)
    assert len(rates) == 6 and rates[0] == pytest.approx(1.2) and rates[-1] == pytest.approx(22.0)
    assert np.allclose(rates[1:] / rates[:-1], rates[1] / rates[0], rtol=0.01)  # geometric
    assert spec.dwell_s == 10.0 and spec.start_state == 2
    matrix = np.asarray(spec.transition)
    assert np.allclose(matrix.sum(axis=1), 1.0) and np.allclose(matrix, matrix.T)
    states = markov_states(spec, 40_000.0, seed=2)
    steps = np.diff(states)
    assert set(np.unique(steps)) <= {-1, 0, 1}  # birth-death: neighbours only
    stay = float((steps == 0)[states[:-1] % 5 != 0].mean())  # interior states
    assert stay == pytest.approx(0.3, abs=0.03)
    assert np.bincount(states, minlength=6) / states.size == pytest.approx(
        np.full(6, 1 / 6), abs=0.05
    )


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"transition": ((0.5, 0.4), (0.5, 0.5))}, "row 0"),
        ({"transition": ((1.0,),)}, "2x2"),
        ({"dwell_s": 0.0}, "dwell_s"),
        ({"start_state": 2}, "start_state"),
        ({"rates_rps": (1.0, -1.0)}, "rate"),
    ],
)
def test_markov_spec_validation(kwargs: dict, fragment: str) -> None:
    args = {"rates_rps": (1.0, 2.0), "transition": ((0.5, 0.5), (0.5, 0.5)), "dwell_s": 1.0}
    with pytest.raises(SpecError, match=fragment):
        MarkovSpec(**{**args, **kwargs})


def test_mmpp_yaml_and_default_needs_capacity(tmp_path: Path) -> None:
    good = tmp_path / "m.yaml"
    good.write_text(
        "rates_rps: [1, 30]\ntransition: [[0.9, 0.1], [0.2, 0.8]]\ndwell_s: 5\nstart_state: 1\n"
    )
    w = parse_workload(f"mmpp:{good}")
    assert w.rate_timeline(60.0, seed=0).rates_rps[0] == 30.0
    assert_valid(w.arrivals(60.0, seed=0), 60.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rates_rps: [1, 30]\ntransition: [[0.9, 0.2], [0.2, 0.8]]\ndwell_s: 5\n")
    with pytest.raises(SpecError, match="bad.yaml.*row 0"):
        parse_workload(f"mmpp:{bad}").arrivals(10.0, seed=0)
    bad.write_text("rates_rps: [1, 30]\ndwell_s: 5\n")
    with pytest.raises(SpecError, match="transition"):
        parse_workload(f"mmpp:{bad}").arrivals(10.0, seed=0)
    default = parse_workload("mmpp")
    with pytest.raises(SpecError, match="capacity_rps"):
        default.arrivals(10.0, seed=0)
    assert default.rate_timeline(300.0, 0, capacity_rps=20.0).rates_rps.max() <= 26.0


# --- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["poisson:30", "mmpp", "step:5,20@10", "spike:5,50,10,5", "trace"])
def test_same_seed_same_arrivals(spec: str, counts_file: Path) -> None:
    w = parse_workload(f"trace:{counts_file},mean=30" if spec == "trace" else spec)
    first = w.arrivals(60.0, seed=7, capacity_rps=25.0)
    assert np.array_equal(first, w.arrivals(60.0, seed=7, capacity_rps=25.0))
    assert not np.array_equal(first, w.arrivals(60.0, seed=8, capacity_rps=25.0))
    assert_valid(first, 60.0)


def test_bad_seed_is_rejected() -> None:
    with pytest.raises(SpecError, match="seed"):
        poisson_arrivals(1.0, 1.0, seed=-1)


# --- count traces -------------------------------------------------------------------------------


def test_trace_scaled_to_target_mean(counts_file: Path) -> None:
    w = TraceWorkload(counts_file, mean_rps=100.0)
    tl = w.rate_timeline(400.0, seed=0)
    assert tl.rates_rps.mean() == pytest.approx(100.0)
    assert tl.rates_rps[:4].tolist() == pytest.approx([40, 80, 120, 160])  # shape kept
    a = w.arrivals(400.0, seed=0)
    assert within_sigma(a.size, 100.0 * 400)
    unscaled = trace_arrivals(counts_file, 400.0, seed=0)
    assert within_sigma(unscaled.size, 25.0 * 400)


def test_trace_start_compression_and_errors(counts_file: Path, tmp_path: Path) -> None:
    assert read_counts(counts_file, 1, 3).tolist() == [20, 30, 40]
    for opener, suffix in [(gzip.open, ".gz"), (bz2.open, ".bz2")]:
        packed = tmp_path / f"counts.txt{suffix}"
        with opener(packed, "wt") as f:
            f.write(counts_file.read_text())
        packed_w, plain_w = TraceWorkload(packed, 9.0, 2), TraceWorkload(counts_file, 9.0, 2)
        assert np.array_equal(packed_w.arrivals(30.0, 4), plain_w.arrivals(30.0, 4))
    with pytest.raises(SpecError, match="only 400 lines"):
        read_counts(counts_file, 390, 20)
    broken = tmp_path / "broken.txt"
    broken.write_text("1\n2\nx\n")
    with pytest.raises(SpecError, match="line 3"):
        read_counts(broken, 0, 3)


@pytest.mark.parametrize("spec, absolute", [
    ("poisson:0.5x", "poisson:20"),
    ("step:0.1x,0.75x@5", "step:4,30@5"),
    ("spike:0.25x,1.5x,3,4", "spike:10,60,3,4"),
])
def test_rates_as_multiples_of_capacity(spec: str, absolute: str) -> None:
    """`0.5x` is half of capacity_rps: the same spec means the same load on any pool."""
    relative, plain = parse_workload(spec), parse_workload(absolute)
    assert np.array_equal(relative.arrivals(12.0, 3, capacity_rps=40.0),
                          plain.arrivals(12.0, 3))
    assert "x capacity" in relative.describe()
    with pytest.raises(SpecError, match="capacity_rps"):
        relative.arrivals(12.0, 3)


def test_trace_mean_as_multiple_of_capacity(counts_file: Path) -> None:
    w = parse_workload(f"trace:{counts_file},mean=0.25x")
    assert w.rate_timeline(40.0, 0, capacity_rps=80.0).rates_rps.mean() == pytest.approx(20.0)
    with pytest.raises(SpecError, match="every rate"):
        parse_workload("step:0.1x,30@5")


def test_trace_speed_replays_block_means(counts_file: Path) -> None:
    """speed=X: each replayed second is the mean of X trace seconds, the shape kept."""
    w = parse_workload(f"trace:{counts_file},start=1,speed=4")
    assert w == TraceWorkload(counts_file, None, 1, 4)
    tl = w.rate_timeline(3.0, seed=0)
    expected = read_counts(counts_file, 1, 12).reshape(3, 4).mean(axis=1)
    assert tl.rates_rps.tolist() == pytest.approx(expected.tolist())
    assert "4x faster" in w.describe()
    with pytest.raises(SpecError, match="whole number"):
        parse_workload(f"trace:{counts_file},speed=0.5")
    with pytest.raises(SpecError, match="only 400 lines"):
        w.rate_timeline(120.0, seed=0)


@pytest.mark.skipif(not TWITTER.exists(), reason="shared twitter trace not available")
def test_real_twitter_trace_window_is_quick() -> None:
    started = time.perf_counter()
    w = parse_workload(f"trace:{TWITTER},mean=20,start=3600")
    tl = w.rate_timeline(60.0, seed=0)
    a = w.arrivals(60.0, seed=0)
    assert time.perf_counter() - started < 2.0
    assert len(tl.times_s) == 60 and tl.rates_rps.mean() == pytest.approx(20.0)
    assert within_sigma(a.size, 1200, k=4)
    assert_valid(a, 60.0)


# --- per-request timestamps ---------------------------------------------------------------------


@pytest.mark.skipif(not AZURE.exists(), reason="shared Azure trace not available")
def test_azure_timestamps() -> None:
    a = read_timestamps(AZURE, 60.0)
    assert a[0] == 0.0 and 20 < a.size < 2000
    assert_valid(a, 60.0)
    fast = parse_workload(f"timestamps:{AZURE},speed=2").arrivals(60.0, seed=0)
    slow_120 = read_timestamps(AZURE, 120.0)
    assert np.allclose(fast, slow_120 / 2)
    late = read_timestamps(AZURE, 60.0, start_s=30.0)
    assert np.allclose(late, slow_120[(slow_120 >= 30) & (slow_120 < 90)] - 30)


def test_timestamps_formats_and_errors(tmp_path: Path) -> None:
    plain = tmp_path / "t.csv"
    plain.write_text("arrival_time,x\n100.5,1\n101.0,2\n103.5,3\n")
    assert read_timestamps(plain, 10.0).tolist() == [0.0, 0.5, 3.0]
    plain.write_text("when,x\n1,2\n")
    with pytest.raises(SpecError, match="TIMESTAMP"):
        read_timestamps(plain, 10.0)
    plain.write_text("TIMESTAMP\n2023-11-16 18:15:47\n2023-11-16 18:15:46\n")
    with pytest.raises(SpecError, match="line 3: time goes backwards"):
        read_timestamps(plain, 10.0)


# --- exact arrival files ------------------------------------------------------------------------


def test_arrivals_file_exact_replay(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    times = [0.0, 0.125, 0.125, 1.5, 9.75, 12.0]
    path.write_text("# recorded\n" + "\n".join(repr(t) for t in times) + "\n\n")
    w = parse_workload(f"arrivals:{path}")
    assert w.arrivals(10.0, seed=0).tolist() == times[:5]
    tl = w.rate_timeline(10.0, seed=0)
    assert tl.rates_rps.sum() == 5 and tl.rates_rps[0] == 3


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("0\n2\n1\n", "line 3.*sort"),
        ("-1\n", "line 1.*>= 0"),
        ("0\nabc\n", "line 2.*seconds"),
        ("0\nnan\n", "finite"),
    ],
)
def test_arrivals_file_errors(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "a.txt"
    path.write_text(content)
    with pytest.raises(SpecError, match=fragment):
        read_arrival_file(path, 10.0)


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("gauss:3", "unknown kind"),
        ("poisson:abc", "must be a number"),
        ("poisson", "must be a number"),
        ("step:1,2,3", "R1,R2"),
        ("spike:1,2,3", "4 comma-separated"),
        ("trace:{f},scale=3", "mean=...,"),
        ("trace:{f},start=1.5", "whole seconds"),
        ("timestamps:", "needs a file"),
    ],
)
def test_syntax_errors_list_accepted_forms(text: str, fragment: str, counts_file: Path) -> None:
    with pytest.raises(SpecError, match=fragment) as info:
        parse_workload(text.format(f=counts_file))
    assert ACCEPTED_FORMS in info.value.message


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("poisson:-2", "> 0"),
        ("spike:1,2,3,0", "LEN > 0"),
        ("arrivals:/no/such/file", "does not exist"),
        ("trace:/no/such/file,mean=3", "does not exist"),
        ("mmpp:/no/such.yaml", "does not exist"),
    ],
)
def test_value_errors(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        parse_workload(text)


def test_parse_round_trip_and_describe(counts_file: Path) -> None:
    assert parse_workload(" Poisson:12.5 ") == PoissonWorkload(12.5)
    assert parse_workload("mmpp") == MarkovWorkload()
    specs = [
        "poisson:3",
        "mmpp",
        "step:1,2@5",
        "spike:1,9,3,2",
        f"trace:{counts_file},start=2",
        f"arrivals:{counts_file}",
    ]
    for text in specs:
        assert parse_workload(text).describe()
    assert "scaled to mean 7 rps" in parse_workload(f"trace:{counts_file},mean=7").describe()


def test_counts_timeline_partial_last_bin() -> None:
    tl = counts_timeline(np.array([0.1, 0.2, 1.5, 2.1, 2.4]), 2.5)
    assert isinstance(tl, RateTimeline)
    assert tl.times_s.tolist() == [0, 1, 2] and tl.rates_rps.tolist() == [2, 1, 4]


def test_piecewise_rejects_bad_timelines() -> None:
    with pytest.raises(SpecError, match="increasing"):
        piecewise_poisson_arrivals(RateTimeline(np.array([1.0]), np.array([1.0])), 5.0, 0)
    with pytest.raises(SpecError, match=">= 0"):
        piecewise_poisson_arrivals(RateTimeline(np.array([0.0]), np.array([-1.0])), 5.0, 0)


def test_default_mmpp_dwell_can_be_set() -> None:
    from gearshift.loadgen.workload import parse_workload

    w = parse_workload("mmpp:dwell=2.5")
    t = w.rate_timeline(20.0, seed=3, capacity_rps=50.0)
    assert np.allclose(np.diff(t.times_s), 2.5)
    assert "2.5 s dwell" in w.describe()
    with pytest.raises(SpecError, match="dwell"):
        parse_workload("mmpp:dwell=0")


def test_benchmark_shapes_are_workloads_scaled_to_capacity() -> None:
    """Every load shape of the switching benchmarks parses, draws different paths per seed,
    and scales with capacity (rates per capacity)."""
    from gearshift.experiment.shapes import shapes

    family = shapes(TRACES, 40.0)
    assert {"mmpp-5", "mmpp-20", "steps", "flash"} <= set(family)
    for name, spec_of in family.items():
        w = parse_workload(spec_of(3))
        low, high = w.arrivals(40.0, 3, capacity_rps=10.0), w.arrivals(40.0, 3, 40.0)
        assert len(high) > 2 * len(low) > 0, name
        assert_valid(high, 40.0)
    assert family["flash"](1) != family["flash"](2)
