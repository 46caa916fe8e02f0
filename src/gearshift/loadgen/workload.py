"""One workload syntax for the load generator, the simulator and the CLI.

`parse_workload(text)` turns a spec string (see `ACCEPTED_FORMS`) into a frozen `Workload`. Parsing
does no file I/O beyond checking that named files exist; files are read when arrivals are drawn.
Every workload offers:

- `arrivals(duration_s, seed, capacity_rps=None)`: sorted float64 arrival times (s) in
  [0, duration_s); the same seed gives the same arrivals.
- `rate_timeline(duration_s, seed, capacity_rps=None)`: the offered load as a step function
  (`RateTimeline(times_s, rates_rps)`) for plots: the process's rate for rate-driven workloads
  (for `mmpp` the very state path behind `arrivals` with the same seed), arrivals per second
  for replays (`timestamps`, `arrivals`).
- `describe()`: a short human string.

`capacity_rps` (the fastest variant's saturation rate) is needed only by the default `mmpp` and
by rates given as multiples of it (`0.5x`), which let one spec mean the same load on any pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeAlias

import numpy as np

from gearshift.errors import SpecError
from gearshift.loadgen.arrivals import (
    DEFAULT_DWELL_S,
    DEFAULT_LOAD_FRACTIONS,
    MarkovSpec,
    RateTimeline,
    counts_timeline,
    default_markov,
    load_markov_yaml,
    markov_timeline,
    piecewise_poisson_arrivals,
    read_arrival_file,
    read_timestamps,
    spike_timeline,
    step_timeline,
    trace_timeline,
)

ACCEPTED_FORMS = """accepted workloads (a rate written with a trailing x, e.g. 0.5x, is that multiple
of capacity_rps: give every rate of a spec that way or none):
  poisson:RATE                         Poisson arrivals at RATE requests/s
  mmpp[:dwell=S]                       default Markov-modulated load (needs capacity_rps),
                                       S seconds per state (default 10)
  mmpp:FILE.yaml                       Markov spec: rates_rps, transition, dwell_s[, start_state]
  step:R1,R2,...@DWELL                 rates R1, R2, ... requests/s, DWELL s each, cycling
  spike:BASE,PEAK,AT,LEN               BASE requests/s, PEAK during [AT, AT+LEN) s
  trace:FILE[,mean=RATE][,start=S][,speed=X]
                                       per-second counts (plain, .gz, .bz2) from line S,
                                       scaled to mean RATE requests/s; with X, each second
                                       replays the mean of X trace seconds
  timestamps:FILE[,speed=X][,start=S]  per-request timestamps CSV from S s, X times faster
  arrivals:FILE                        arrival times in seconds, one per line, replayed exactly"""


def _g(x: float) -> str:
    return f"{x:g}"


def _unit(per_capacity: bool, capacity_rps: float | None, kind: str) -> float:
    """requests/s per unit of a spec's rates: 1, or `capacity_rps` for rates written `0.5x`."""
    if not per_capacity:
        return 1.0
    if capacity_rps is None or not (math.isfinite(capacity_rps) and capacity_rps > 0):
        raise SpecError(
            f"this {kind} workload gives rates as multiples of capacity (0.5x): pass "
            "capacity_rps (the fastest variant's saturation rate), or give rates in requests/s"
        )
    return float(capacity_rps)


def _rate_text(x: float, per_capacity: bool) -> str:
    return f"{_g(x)} x capacity" if per_capacity else f"{_g(x)} rps"


class _RateDriven:
    """Poisson arrivals inside each segment of the workload's own rate timeline."""

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        raise NotImplementedError

    def arrivals(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> np.ndarray:
        """Arrival times (s) in [0, duration_s), sorted."""
        timeline = self.rate_timeline(duration_s, seed, capacity_rps)
        return piecewise_poisson_arrivals(timeline, duration_s, seed)


class _Replay:
    """Recorded arrivals; the offered load is their count per second."""

    def arrivals(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """Arrivals per 1 s bin (rps)."""
        return counts_timeline(self.arrivals(duration_s, seed, capacity_rps), duration_s)


@dataclass(frozen=True)
class PoissonWorkload(_RateDriven):
    """`poisson:RATE`: homogeneous Poisson arrivals at `rate_rps` (x capacity if
    `per_capacity`)."""

    rate_rps: float
    per_capacity: bool = False

    def __post_init__(self) -> None:
        if not self.rate_rps > 0 or self.rate_rps == float("inf"):
            raise SpecError(
                f"poisson rate must be a finite number > 0 requests/s, got {self.rate_rps}"
            )

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """A constant rate (rps) from t_s = 0."""
        unit = _unit(self.per_capacity, capacity_rps, "poisson")
        return RateTimeline(np.zeros(1), np.array([float(self.rate_rps) * unit]))

    def describe(self) -> str:
        return f"Poisson at {_rate_text(self.rate_rps, self.per_capacity)}"


@dataclass(frozen=True)
class MarkovWorkload(_RateDriven):
    """`mmpp` / `mmpp:FILE.yaml`: a Markov-modulated Poisson process.

    Exactly one source: `spec` (built in code), `path` (YAML, read when used) or neither
    (the default chain of `default_markov`, scaled to `capacity_rps`).
    """

    spec: MarkovSpec | None = None
    path: Path | None = None
    dwell_s: float | None = None  # the default chain with another dwell time (s)

    def __post_init__(self) -> None:
        if self.spec is not None and self.path is not None:
            raise SpecError("MarkovWorkload takes a spec or a path, not both")
        if self.dwell_s is not None and not self.dwell_s > 0:
            raise SpecError(f"mmpp dwell must be > 0 s, got {self.dwell_s:g}")

    def resolve(self, capacity_rps: float | None) -> MarkovSpec:
        """The MarkovSpec this workload runs, given the capacity (rps) under test."""
        if self.spec is not None:
            return self.spec
        if self.path is not None:
            return load_markov_yaml(self.path)
        if capacity_rps is None:
            raise SpecError(
                "the default mmpp workload is scaled to capacity: pass capacity_rps "
                "(the fastest variant's saturation rate, from its profile), or use "
                "mmpp:FILE.yaml or poisson:RATE"
            )
        spec = default_markov(capacity_rps)
        return spec if self.dwell_s is None else replace(spec, dwell_s=self.dwell_s)

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """The state path's rates (rps), one segment per dwell period."""
        return markov_timeline(self.resolve(capacity_rps), duration_s, seed)

    def describe(self) -> str:
        if self.path is not None:
            return f"Markov-modulated Poisson from {self.path.name}"
        if self.spec is None:
            return (
                f"Markov-modulated Poisson, {len(DEFAULT_LOAD_FRACTIONS)} states "
                f"{_g(DEFAULT_LOAD_FRACTIONS[0])}-{_g(DEFAULT_LOAD_FRACTIONS[-1])} x capacity, "
                f"{_g(self.dwell_s or DEFAULT_DWELL_S)} s dwell"
            )
        rates = self.spec.rates_rps
        return (
            f"Markov-modulated Poisson, {len(rates)} states {_g(min(rates))}-"
            f"{_g(max(rates))} rps, {_g(self.spec.dwell_s)} s dwell"
        )


@dataclass(frozen=True)
class StepWorkload(_RateDriven):
    """`step:R1,R2,...@DWELL`: each rate (rps, or x capacity if `per_capacity`) for `dwell_s`
    seconds, cycling."""

    rates_rps: tuple[float, ...]
    dwell_s: float
    per_capacity: bool = False

    def __post_init__(self) -> None:
        step_timeline(self.rates_rps, self.dwell_s, 0.0)  # validates

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """One segment (rps) per dwell period."""
        unit = _unit(self.per_capacity, capacity_rps, "step")
        return step_timeline([r * unit for r in self.rates_rps], self.dwell_s, duration_s)

    def describe(self) -> str:
        rates = ", ".join(_g(r) for r in self.rates_rps)
        unit = "x capacity" if self.per_capacity else "rps"
        return f"steps of {rates} {unit}, {_g(self.dwell_s)} s each, cycling"


@dataclass(frozen=True)
class SpikeWorkload(_RateDriven):
    """`spike:BASE,PEAK,AT,LEN`: `base_rps`, and `peak_rps` during [at_s, at_s + len_s) (both x
    capacity if `per_capacity`)."""

    base_rps: float
    peak_rps: float
    at_s: float
    len_s: float
    per_capacity: bool = False

    def __post_init__(self) -> None:
        spike_timeline(self.base_rps, self.peak_rps, self.at_s, self.len_s, 0.0)  # validates

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """Base, peak, base (rps)."""
        unit = _unit(self.per_capacity, capacity_rps, "spike")
        return spike_timeline(self.base_rps * unit, self.peak_rps * unit, self.at_s, self.len_s,
                              duration_s)

    def describe(self) -> str:
        return (
            f"{_rate_text(self.base_rps, self.per_capacity)} with a "
            f"{_rate_text(self.peak_rps, self.per_capacity)} spike at "
            f"{_g(self.at_s)}-{_g(self.at_s + self.len_s)} s"
        )


@dataclass(frozen=True)
class TraceWorkload(_RateDriven):
    """`trace:FILE[,mean=RATE][,start=S][,speed=X]`: replay a per-second count trace from line
    `start_s`, each replayed second the mean of `speed` trace seconds.

    With `mean_rps` the window's rates are scaled by mean_rps / (their mean); arrivals are
    Poisson inside each second at that second's (scaled) rate.
    """

    path: Path
    mean_rps: float | None = None
    start_s: int = 0
    speed: int = 1
    per_capacity: bool = False  # mean_rps is a multiple of capacity

    def __post_init__(self) -> None:
        if self.mean_rps is not None and not 0 < self.mean_rps < float("inf"):
            raise SpecError(f"trace mean must be > 0 requests/s, got {self.mean_rps}")
        if self.start_s < 0:
            raise SpecError(f"trace start must be >= 0 s, got {self.start_s}")
        if self.speed < 1:
            raise SpecError(f"trace speed must be a whole number >= 1, got {self.speed}")

    def rate_timeline(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> RateTimeline:
        """The (scaled) count of each second, as a rate (rps)."""
        mean = (None if self.mean_rps is None else
                self.mean_rps * _unit(self.per_capacity, capacity_rps, "trace"))
        return trace_timeline(self.path, duration_s, self.start_s, mean, self.speed)

    def describe(self) -> str:
        scaled = (f", scaled to mean {_rate_text(self.mean_rps, self.per_capacity)}"
                  if self.mean_rps else "")
        fast = f", {self.speed}x faster" if self.speed > 1 else ""
        return f"trace {self.path.name} from {self.start_s} s{fast}{scaled}"


@dataclass(frozen=True)
class TimestampsWorkload(_Replay):
    """`timestamps:FILE[,speed=X][,start=S]`: replay per-request timestamps (see read_timestamps).

    Shifted so the file's first request is at 0, cut `start_s` trace seconds later, and
    compressed `speed` times. Deterministic: the seed is ignored.
    """

    path: Path
    speed: float = 1.0
    start_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.speed < float("inf") or not 0 <= self.start_s < float("inf"):
            raise SpecError(
                f"timestamps need speed > 0 and start >= 0 s, "
                f"got speed={self.speed}, start={self.start_s}"
            )

    def arrivals(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> np.ndarray:
        """Replayed arrival times (s) in [0, duration_s)."""
        return read_timestamps(self.path, duration_s, self.start_s, self.speed)

    def describe(self) -> str:
        return f"timestamps {self.path.name} from {_g(self.start_s)} s at {_g(self.speed)}x speed"


@dataclass(frozen=True)
class ArrivalsFileWorkload(_Replay):
    """`arrivals:FILE`: arrival times (s), one per line, replayed exactly (seed ignored)."""

    path: Path

    def arrivals(
        self, duration_s: float, seed: int, capacity_rps: float | None = None
    ) -> np.ndarray:
        """The file's times (s) below duration_s."""
        return read_arrival_file(self.path, duration_s)

    def describe(self) -> str:
        return f"arrivals replayed from {self.path.name}"


Workload: TypeAlias = (
    PoissonWorkload
    | MarkovWorkload
    | StepWorkload
    | SpikeWorkload
    | TraceWorkload
    | TimestampsWorkload
    | ArrivalsFileWorkload
)


# --- parsing ------------------------------------------------------------------------------------


class _Syntax(Exception):
    """Internal: the spec string is malformed (turned into a SpecError listing the forms)."""


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _Syntax(f"{what} must be a number, got {text!r}") from None


def _rates(texts: list[str], what: str) -> tuple[list[float], bool]:
    """Rates in requests/s, or all as multiples of capacity (`0.5x`): (values, per_capacity)."""
    relative = [t.strip().lower().endswith("x") for t in texts]
    if any(relative) and not all(relative):
        raise _Syntax(f"{what}: give every rate as a multiple of capacity (0.5x) or none")
    values = [_number(t.strip().rstrip("xX") if all(relative) else t.strip(), what)
              for t in texts]
    return values, all(relative)


def _file(text: str, kind: str) -> Path:
    if not text:
        raise _Syntax(f"{kind} needs a file, e.g. {kind}:path/to/file")
    path = Path(text).expanduser()
    if not path.is_file():
        raise SpecError(f"{kind} file {path} does not exist; check the path")
    return path


def _file_and_options(arg: str, kind: str, allowed: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    name, *rest = [p.strip() for p in arg.split(",")]
    options: dict[str, str] = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or key not in allowed or key in options:
            raise _Syntax(
                f"{kind} option {item!r} is not one of "
                f"{', '.join(k + '=...' for k in allowed)} (each at most once)"
            )
        options[key] = value
    return _file(name, kind), options


def _poisson(arg: str) -> Workload:
    (rate,), relative = _rates([arg], "poisson RATE")
    return PoissonWorkload(rate, relative)


def _mmpp(arg: str) -> Workload:
    if arg.startswith("dwell="):
        return MarkovWorkload(dwell_s=_number(arg.removeprefix("dwell="), "mmpp dwell"))
    return MarkovWorkload() if not arg else MarkovWorkload(path=_file(arg, "mmpp"))


def _step(arg: str) -> Workload:
    rates, at, dwell = arg.partition("@")
    if not at or not rates:
        raise _Syntax(f"step needs R1,R2,...@DWELL, got {arg!r}")
    values, relative = _rates(rates.split(","), "step rate")
    return StepWorkload(tuple(values), _number(dwell, "step DWELL"), relative)


def _spike(arg: str) -> Workload:
    parts = [p.strip() for p in arg.split(",")]
    if len(parts) != 4:
        raise _Syntax(f"spike BASE,PEAK,AT,LEN takes 4 comma-separated numbers, got {arg!r}")
    (base, peak), relative = _rates(parts[:2], "spike BASE,PEAK")
    at, length = (_number(p, "spike AT,LEN") for p in parts[2:])
    return SpikeWorkload(base, peak, at, length, relative)


def _trace(arg: str) -> Workload:
    path, opts = _file_and_options(arg, "trace", ("mean", "start", "speed"))
    mean, relative = (None, False)
    if "mean" in opts:
        (mean,), relative = _rates([opts["mean"]], "trace mean")
    start = _number(opts.get("start", "0"), "trace start")
    if not math.isfinite(start) or start != int(start):
        raise _Syntax(f"trace start is a line offset in whole seconds, got {start:g}")
    speed = _number(opts.get("speed", "1"), "trace speed")
    if not math.isfinite(speed) or speed != int(speed) or speed < 1:
        raise _Syntax(f"trace speed is a whole number of trace seconds >= 1, got {speed:g}")
    return TraceWorkload(path, mean, int(start), int(speed), relative)


def _timestamps(arg: str) -> Workload:
    path, opts = _file_and_options(arg, "timestamps", ("speed", "start"))
    speed = _number(opts.get("speed", "1"), "timestamps speed")
    return TimestampsWorkload(path, speed, _number(opts.get("start", "0"), "timestamps start"))


def _arrivals(arg: str) -> Workload:
    return ArrivalsFileWorkload(_file(arg, "arrivals"))


_PARSERS = {
    "poisson": _poisson,
    "mmpp": _mmpp,
    "step": _step,
    "spike": _spike,
    "trace": _trace,
    "timestamps": _timestamps,
    "arrivals": _arrivals,
}


def parse_workload(text: str) -> Workload:
    """Parse a workload spec (see ACCEPTED_FORMS); raises SpecError naming the problem."""
    kind, _, arg = text.strip().partition(":")
    parser = _PARSERS.get(kind.strip().lower())
    try:
        if parser is None:
            raise _Syntax(f"unknown kind {kind.strip()!r}")
        return parser(arg.strip())
    except _Syntax as exc:
        raise SpecError(f"bad workload {text!r}: {exc}\n{ACCEPTED_FORMS}") from None
    except SpecError as exc:
        raise SpecError(f"bad workload {text!r}: {exc.message}") from None
