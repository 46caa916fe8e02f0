"""Arrival processes: pure, seeded generators of request arrival times.

Every generator returns a sorted float64 array of arrival times in seconds within
`[0, duration_s)`. Random generators take `seed: int`; the same seed gives identical arrivals.
Rate-driven processes (Poisson, Markov-modulated, steps, spikes, per-second count traces) are
built in two steps: a piecewise-constant `RateTimeline` (the offered load a report plots), then
Poisson arrivals inside each segment. Two independent streams are drawn from the seed
(`SeedSequence(seed).spawn(2)`): stream 0 drives the Markov state path, stream 1 the arrivals,
so `markov_timeline(spec, d, seed)` is exactly the load behind `markov_arrivals(spec, d, seed)`.
Replays (`read_timestamps`, `read_arrival_file`) are deterministic and take no seed.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from gearshift.errors import SpecError

_ARRIVAL_STREAM = 1
_STATE_STREAM = 0


class RateTimeline(NamedTuple):
    """Piecewise-constant offered load.

    `rates_rps[i]` holds from `times_s[i]` until `times_s[i + 1]` (the last rate until the run's
    end). `times_s` starts at 0 and increases strictly. Plot with `drawstyle="steps-post"`.
    """

    times_s: np.ndarray
    rates_rps: np.ndarray


# --- shared helpers ---------------------------------------------------------------------------


def _check_duration(duration_s: float) -> None:
    if not math.isfinite(duration_s) or duration_s < 0:
        raise SpecError(f"duration_s must be a finite number >= 0, got {duration_s}")


def _check_rate(name: str, rate_rps: float) -> None:
    if not math.isfinite(rate_rps) or rate_rps < 0:
        raise SpecError(f"{name} must be a finite rate >= 0 requests/s, got {rate_rps}")


def _rng(seed: int, stream: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(2)[stream])


def piecewise_poisson_arrivals(timeline: RateTimeline, duration_s: float, seed: int) -> np.ndarray:
    """Poisson arrivals (s) in [0, duration_s) at the timeline's rate in each segment.

    Exact for piecewise-constant rates: a Poisson count per segment, placed uniformly in it.
    """
    _check_duration(duration_s)
    starts = np.asarray(timeline.times_s, dtype=np.float64)
    rates = np.asarray(timeline.rates_rps, dtype=np.float64)
    if (
        len(starts) == 0
        or starts[0] != 0
        or np.any(np.diff(starts) <= 0)
        or len(rates) != len(starts)
    ):
        raise SpecError("a rate timeline needs increasing times_s from 0, one rate per time")
    if not np.all(np.isfinite(rates) & (rates >= 0)):
        raise SpecError("a rate timeline needs finite rates >= 0 requests/s")
    rng = _rng(seed, _ARRIVAL_STREAM)
    keep = starts < duration_s
    starts, rates = starts[keep], rates[keep]
    lengths = np.append(starts[1:], duration_s) - starts
    counts = rng.poisson(rates * lengths)
    out = np.repeat(starts, counts) + rng.random(int(counts.sum())) * np.repeat(lengths, counts)
    out.sort()
    return out[out < duration_s]  # guards float rounding at a segment's end


def counts_timeline(arrivals_s: np.ndarray, duration_s: float, bin_s: float = 1.0) -> RateTimeline:
    """Empirical offered load of recorded arrivals: count per `bin_s` bin / bin width (rps)."""
    _check_duration(duration_s)
    n = max(1, math.ceil(duration_s / bin_s))
    edges = np.minimum(np.arange(n + 1) * bin_s, duration_s)
    counts, _ = np.histogram(arrivals_s, bins=edges)
    widths = np.diff(edges)
    rates = np.divide(counts, widths, out=np.zeros(n), where=widths > 0)
    return RateTimeline(edges[:-1].astype(np.float64), rates)


# --- Poisson, steps, spikes ---------------------------------------------------------------------


def poisson_arrivals(rate_rps: float, duration_s: float, seed: int) -> np.ndarray:
    """Homogeneous Poisson arrivals (s) at `rate_rps` in [0, duration_s)."""
    _check_rate("rate_rps", rate_rps)
    timeline = RateTimeline(np.zeros(1), np.array([float(rate_rps)]))
    return piecewise_poisson_arrivals(timeline, duration_s, seed)


def step_timeline(rates_rps: Sequence[float], dwell_s: float, duration_s: float) -> RateTimeline:
    """Rates held `dwell_s` seconds each, in order, cycling until `duration_s`."""
    _check_duration(duration_s)
    if not rates_rps:
        raise SpecError("a step workload needs at least one rate, e.g. step:5,20,10@30")
    for r in rates_rps:
        _check_rate("every step rate", r)
    if not math.isfinite(dwell_s) or dwell_s <= 0:
        raise SpecError(f"step dwell_s must be > 0 seconds, got {dwell_s}")
    n = max(1, math.ceil(duration_s / dwell_s))
    rates = np.resize(np.asarray(rates_rps, dtype=np.float64), n)
    return RateTimeline(np.arange(n) * float(dwell_s), rates)


def step_arrivals(
    rates_rps: Sequence[float], dwell_s: float, duration_s: float, seed: int
) -> np.ndarray:
    """Poisson arrivals (s) following `step_timeline`."""
    return piecewise_poisson_arrivals(
        step_timeline(rates_rps, dwell_s, duration_s), duration_s, seed
    )


def spike_timeline(
    base_rps: float, peak_rps: float, at_s: float, len_s: float, duration_s: float
) -> RateTimeline:
    """`base_rps`, except `peak_rps` during [at_s, at_s + len_s)."""
    _check_duration(duration_s)
    _check_rate("spike base", base_rps)
    _check_rate("spike peak", peak_rps)
    if not (math.isfinite(at_s) and at_s >= 0 and math.isfinite(len_s) and len_s > 0):
        raise SpecError(f"spike needs AT >= 0 and LEN > 0 seconds, got AT={at_s}, LEN={len_s}")
    points = [(0.0, base_rps), (at_s, peak_rps), (at_s + len_s, base_rps)]
    times: list[float] = []
    rates: list[float] = []
    for t, r in points:
        if times and t == times[-1]:
            rates[-1] = r  # a zero-length segment: the later rate wins
        elif t < duration_s or not times:
            times.append(float(t))
            rates.append(float(r))
    return RateTimeline(np.array(times), np.array(rates))


def spike_arrivals(
    base_rps: float, peak_rps: float, at_s: float, len_s: float, duration_s: float, seed: int
) -> np.ndarray:
    """Poisson arrivals (s) following `spike_timeline`."""
    timeline = spike_timeline(base_rps, peak_rps, at_s, len_s, duration_s)
    return piecewise_poisson_arrivals(timeline, duration_s, seed)


# --- Markov-modulated Poisson process ---------------------------------------------------------


@dataclass(frozen=True)
class MarkovSpec:
    """A Markov-modulated Poisson process (the paper's load generator).

    Every `dwell_s` seconds the state moves by `transition` (row i: probabilities of moving from
    state i to each state; rows sum to 1). In state i arrivals are Poisson at `rates_rps[i]`.
    """

    rates_rps: tuple[float, ...]
    transition: tuple[tuple[float, ...], ...]
    dwell_s: float
    start_state: int = 0

    def __post_init__(self) -> None:
        # Coerce lists (from YAML or callers) to tuples so the spec stays hashable.
        object.__setattr__(self, "rates_rps", tuple(float(r) for r in self.rates_rps))
        rows = tuple(tuple(float(p) for p in row) for row in self.transition)
        object.__setattr__(self, "transition", rows)
        self._validate()

    def _validate(self) -> None:
        n = len(self.rates_rps)
        if n == 0:
            raise SpecError("MarkovSpec needs at least one state in rates_rps")
        for r in self.rates_rps:
            _check_rate("every MarkovSpec rate", r)
        if len(self.transition) != n or any(len(row) != n for row in self.transition):
            raise SpecError(
                f"MarkovSpec transition must be a {n}x{n} matrix (one row and "
                f"column per rate), got rows of lengths "
                f"{[len(row) for row in self.transition]}"
            )
        for i, row in enumerate(self.transition):
            if any(not (0.0 <= p <= 1.0) for p in row) or abs(sum(row) - 1.0) > 1e-6:
                raise SpecError(
                    f"MarkovSpec transition row {i} must hold probabilities in "
                    f"[0, 1] summing to 1, got {list(row)} (sum {sum(row):.6g})"
                )
        if not (math.isfinite(self.dwell_s) and self.dwell_s > 0):
            raise SpecError(f"MarkovSpec dwell_s must be > 0 seconds, got {self.dwell_s}")
        if not 0 <= self.start_state < n:
            raise SpecError(f"MarkovSpec start_state must be in 0..{n - 1}, got {self.start_state}")


DEFAULT_LOAD_FRACTIONS = tuple(round(float(x), 3) for x in np.geomspace(0.06, 1.1, 6))
DEFAULT_STAY_PROB = 0.3
DEFAULT_DWELL_S = 10.0


def default_markov(capacity_rps: float) -> MarkovSpec:
    """The default fluctuating load, scaled to `capacity_rps` (fastest variant's saturation rate).

    Six states spaced geometrically, 0.06, 0.107, 0.192, 0.344, 0.615 and 1.1 x capacity: from
    nearly idle (the heaviest variant wins) to beyond the light variant's knee (only shedding
    or the lightest model helps). Geometric, because the variants' capacities are spread that
    way (a pool's heavy models saturate at a small fraction of its light model's rate), so every
    variant gets a level where it is the best choice. A birth-death chain: every 10 s it stays
    with probability 0.3, else moves to a neighbouring state (0.35 each way; the end states stay
    with 0.65). The matrix is symmetric, hence doubly stochastic: over a long run every level
    gets equal time. It starts in the middle (state 2), so a short run sees loads both lighter
    and heavier than where it began.
    """
    if not (math.isfinite(capacity_rps) and capacity_rps > 0):
        raise SpecError(f"capacity_rps must be > 0 requests/s, got {capacity_rps}")
    n = len(DEFAULT_LOAD_FRACTIONS)
    move = np.full(n - 1, (1.0 - DEFAULT_STAY_PROB) / 2)
    matrix = np.diag(move, 1) + np.diag(move, -1)
    matrix += np.diag(1.0 - matrix.sum(axis=1))
    rows = tuple(tuple(round(float(p), 12) for p in row) for row in matrix)
    rates = tuple(round(f * capacity_rps, 9) for f in DEFAULT_LOAD_FRACTIONS)
    return MarkovSpec(rates, rows, DEFAULT_DWELL_S, start_state=n // 2 - 1)


def markov_states(spec: MarkovSpec, duration_s: float, seed: int) -> np.ndarray:
    """State index (int) of each dwell period [k * dwell_s, (k + 1) * dwell_s) in the run."""
    _check_duration(duration_s)
    n = max(1, math.ceil(duration_s / spec.dwell_s))
    cumulative = np.cumsum(np.asarray(spec.transition), axis=1)
    draws = _rng(seed, _STATE_STREAM).random(n)
    states = np.empty(n, dtype=np.int64)
    states[0] = spec.start_state
    last = len(spec.rates_rps) - 1
    for k in range(1, n):
        nxt = int(np.searchsorted(cumulative[states[k - 1]], draws[k], side="right"))
        states[k] = min(nxt, last)  # rows may sum to 1 - 1e-12
    return states


def markov_timeline(spec: MarkovSpec, duration_s: float, seed: int) -> RateTimeline:
    """Offered load of the MMPP: one segment per dwell period, at its state's rate."""
    states = markov_states(spec, duration_s, seed)
    times = np.arange(len(states)) * float(spec.dwell_s)
    return RateTimeline(times, np.asarray(spec.rates_rps)[states])


def markov_arrivals(spec: MarkovSpec, duration_s: float, seed: int) -> np.ndarray:
    """MMPP arrivals (s) in [0, duration_s); the load behind them is `markov_timeline`."""
    return piecewise_poisson_arrivals(markov_timeline(spec, duration_s, seed), duration_s, seed)


class _MarkovFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rates_rps: list[float]
    transition: list[list[float]]
    dwell_s: float
    start_state: int = 0


def load_markov_yaml(path: str | Path) -> MarkovSpec:
    """Read a MarkovSpec from YAML with keys rates_rps, transition, dwell_s, [start_state]."""
    path = _existing(path, "Markov spec")
    try:
        data = yaml.safe_load(path.read_text())
        parsed = _MarkovFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise SpecError(f"Markov spec {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise SpecError(
            f"Markov spec {path} is invalid ({problems}); it needs keys rates_rps "
            "(list), transition (square matrix, rows sum to 1), dwell_s and "
            "optionally start_state"
        ) from None
    try:
        return MarkovSpec(**parsed.model_dump())
    except SpecError as exc:
        raise SpecError(f"Markov spec {path}: {exc.message}") from None


# --- files --------------------------------------------------------------------------------------


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"{what} file {path} does not exist; check the path")
    return path


@contextmanager
def open_text(path: str | Path) -> Iterator[TextIO]:
    """Open a plain, gzip or bzip2 text file (detected by its magic bytes) for streaming."""
    path = _existing(path, "input")
    with path.open("rb") as raw:
        magic = raw.read(3)
    if magic[:2] == b"\x1f\x8b":
        stream: TextIO = gzip.open(path, "rt", encoding="utf-8")  # noqa: SIM115 - closed below
    elif magic == b"BZh":
        stream = bz2.open(path, "rt", encoding="utf-8")  # noqa: SIM115 - closed below
    else:
        stream = path.open("r", encoding="utf-8")
    with stream:
        yield stream


def _at(path: str | Path, line_no: int) -> str:
    return f"{path} line {line_no}:"


def _count(line: str, path: str | Path, line_no: int) -> int:
    try:
        count = int(line)
    except ValueError:
        raise SpecError(
            f"{_at(path, line_no)} expected one integer count, got {line.strip()!r}"
        ) from None
    if count < 0:
        raise SpecError(f"{_at(path, line_no)} count {count} is negative")
    return count


def read_counts(path: str | Path, start_s: int, n_s: int) -> np.ndarray:
    """Per-second counts from lines [start_s, start_s + n_s) of a count trace, streamed."""
    if start_s < 0 or n_s < 0:
        raise SpecError(f"trace start must be >= 0 and length >= 0, got {start_s}, {n_s}")
    counts = np.empty(n_s, dtype=np.float64)
    got = 0
    with open_text(path) as f:
        for i, line in enumerate(itertools.islice(f, start_s, start_s + n_s)):
            counts[i] = _count(line, path, line_no=start_s + i + 1)
            got = i + 1
    if got < n_s:
        raise SpecError(
            f"trace {path} has only {start_s + got} lines, but start={start_s} and "
            f"{n_s} s need {start_s + n_s}; use an earlier start or a shorter run"
        )
    return counts


def trace_timeline(
    path: str | Path, duration_s: float, start_s: int = 0, mean_rps: float | None = None,
    speed: int = 1,
) -> RateTimeline:
    """Per-second rates from a count trace, one segment per second from line `start_s`.

    The window is ceil(duration_s) x `speed` lines: with `speed` > 1 each replayed second is the
    mean count of `speed` trace seconds (a day-long trace's ramps in a short run; the Poisson
    noise within a second is the replay's own). With `mean_rps`, every rate is multiplied by
    `mean_rps / (mean over the window)`, so the replayed window has mean rate `mean_rps` and
    keeps the trace's shape; without it the counts are replayed as rates unchanged.
    """
    _check_duration(duration_s)
    if speed < 1:
        raise SpecError(f"trace speed must be a whole number >= 1, got {speed}")
    n = max(1, math.ceil(duration_s))
    counts = read_counts(path, int(start_s), n * speed).reshape(n, speed).mean(axis=1)
    if mean_rps is not None:
        _check_rate("trace mean", mean_rps)
        window_mean = float(counts.mean())
        if window_mean <= 0:
            raise SpecError(
                f"trace {path} has no requests in the window from {start_s} s; "
                "mean= cannot scale it, pick another start"
            )
        counts = counts * (mean_rps / window_mean)
    return RateTimeline(np.arange(len(counts), dtype=np.float64), counts)


def trace_arrivals(
    path: str | Path, duration_s: float, seed: int, start_s: int = 0,
    mean_rps: float | None = None, speed: int = 1,
) -> np.ndarray:
    """Poisson arrivals (s) inside each second at that second's (scaled) trace rate."""
    timeline = trace_timeline(path, duration_s, start_s, mean_rps, speed)
    return piecewise_poisson_arrivals(timeline, duration_s, seed)


def _parse_time_ns(cell: str) -> int:
    """A timestamp cell as integer nanoseconds: seconds as a number, or an ISO date-time."""
    cell = cell.strip()
    try:
        return round(float(cell) * 1e9)
    except ValueError:
        return int(np.datetime64(cell, "ns").astype(np.int64))


def _time_column(header: list[str], path: Path) -> int:
    for i, name in enumerate(header):
        if "time" in name.strip().lower():
            return i
    raise SpecError(
        f"timestamps file {path} has header {header} but no column named like "
        "TIMESTAMP; add one or drop the header"
    )


def _timestamp_rows(path: Path) -> Iterator[tuple[int, int]]:
    """(line number, time in ns) of every data row, in file order."""
    with open_text(path) as f:
        rows = csv.reader(f)
        column = 0
        for line_no, row in enumerate(rows, start=1):
            if not row or not row[0].strip():
                continue
            try:
                t_ns = _parse_time_ns(row[column])
            except (ValueError, IndexError):
                if line_no != 1:
                    raise SpecError(
                        f"{_at(path, line_no)} cannot read a time from {row!r}"
                    ) from None
                column = _time_column(row, path)
                continue
            yield line_no, t_ns


def read_timestamps(
    path: str | Path, duration_s: float, start_s: float = 0.0, speed: float = 1.0
) -> np.ndarray:
    """Replay per-request timestamps (CSV, optionally compressed) as arrivals (s).

    Times are shifted so the file's first request is at 0; the window starting `start_s`
    trace seconds later becomes t = 0 and trace time is divided by `speed` (2 = twice as fast).
    Reads only up to the window's end. Rows must be in time order.
    """
    _check_duration(duration_s)
    if not (math.isfinite(speed) and speed > 0) or not (math.isfinite(start_s) and start_s >= 0):
        raise SpecError(f"timestamps need speed > 0 and start >= 0, got {speed}, {start_s}")
    path = _existing(path, "timestamps")
    first_ns = prev_ns = None
    out: list[float] = []
    for line_no, t_ns in _timestamp_rows(path):
        if prev_ns is not None and t_ns < prev_ns:
            raise SpecError(f"{_at(path, line_no)} time goes backwards; sort the file by time")
        first_ns = t_ns if first_ns is None else first_ns
        prev_ns = t_ns
        t_s = ((t_ns - first_ns) / 1e9 - start_s) / speed
        if t_s >= duration_s:
            break
        if t_s >= 0:
            out.append(t_s)
    return np.asarray(out, dtype=np.float64)


def read_arrival_file(path: str | Path, duration_s: float) -> np.ndarray:
    """Replay a file of arrival times (s), one per line, exactly; keeps those < duration_s.

    Blank lines and lines starting with `#` are skipped. Times must be finite, >= 0 and sorted.
    """
    _check_duration(duration_s)
    path = _existing(path, "arrivals")
    out: list[float] = []
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                t_s = float(text)
            except ValueError:
                raise SpecError(
                    f"{_at(path, line_no)} expected a time in seconds, got {text!r}"
                ) from None
            if not math.isfinite(t_s) or t_s < 0:
                raise SpecError(f"{_at(path, line_no)} time {text} must be finite and >= 0")
            if out and t_s < out[-1]:
                raise SpecError(f"{_at(path, line_no)} {t_s} is before {out[-1]}; sort the file")
            if t_s >= duration_s:
                break
            out.append(t_s)
    return np.asarray(out, dtype=np.float64)
