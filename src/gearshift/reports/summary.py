"""Per-policy metrics from request records, and the summary.json document scripts read.

Definitions (every fraction is over ALL requests of the run, answered or not):
- requests: every record. errors: records whose status is not 200 (dropped, shed, failed).
- on time: answered (status 200) with client latency `(completed_s - sent_s) * 1000 <= deadline`
  (the record's own deadline, or the one given). A failed or dropped (504) request is never on
  time. The recorded `on_time` flag is not used: it may be the server's view, which leaves out
  the network; the client's latency is what a user sees.
- effective accuracy, basis "declared" (the paper's): mean over requests of the answering
  variant's published accuracy if on time, else 0. Basis "labels": the fraction of requests
  answered on time AND correct (every on-time answer must then carry a label).
- p50 / p99: latency percentiles (ms, linear interpolation) over answered requests only.
- upgrades / fallbacks: of the answered requests whose record says what their variant was to
  the decision in force (`served_as`), the fraction answered by an upgrade (a more accurate
  variant, for a request that found a replica free) and by a fallback (a lighter one, for a
  request the variant in force would have answered late); NaN when no record says.
- switches: how often the variant changes, from the controller's decisions when given (a control
  trace, or the sequence of decided variants), else from the answering variant of consecutive
  answered requests ordered by send time.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import numpy as np

from gearshift.control.factory import SWITCHING
from gearshift.policy import ORACLE, static_variant
from gearshift.reports.control_log import ControlTrace, count_switches
from gearshift.reports.frame import RecordFrame
from gearshift.types import JSON, JSONObject

Basis = Literal["declared", "labels"]
Source = Literal["simulated", "measured"]
BASES: tuple[str, ...] = ("declared", "labels")
SOURCES: tuple[str, ...] = ("simulated", "measured")
_FRACTION_DIGITS = 6
_MS_DIGITS = 3
_EPS_MS = 1e-6


class PolicyJSON(TypedDict):
    """`PolicySummary.to_json()`: null for NaN."""

    effective_accuracy: float | None
    on_time: float | None
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int
    switches: int
    service_ms: NotRequired[float | None]  # absent from summaries written before it was kept
    upgrades: NotRequired[float | None]  # these two likewise
    fallbacks: NotRequired[float | None]


class SweepJSON(TypedDict):
    """`SweepResult.to_json()`: the summary's `deadlines` entry."""

    deadline_ms: list[float]
    source: Source
    policies: dict[str, list[float | None]]
    duration_s: NotRequired[float]
    requests: NotRequired[int]
    paths: NotRequired[int]
    seeds: NotRequired[list[int]]


class RoundsJSON(TypedDict):
    """The summary's `rounds` entry, for an experiment that ran every policy more than once
    (`rounds_entry`)."""

    orders: list[list[str]]
    policies: dict[str, list[PolicyJSON]]
    mean_effective_accuracy: dict[str, float | None]
    margin_over_best_static: dict[str, list[float | None]]


class SummaryDoc(TypedDict):
    """The summary.json document (`build_summary`)."""

    deadline_ms: float
    accuracy_basis: Basis
    policies: dict[str, PolicyJSON]
    deadlines: SweepJSON
    simulated: dict[str, PolicyJSON]
    notes: dict[str, JSON]
    replayed: NotRequired[dict[str, PolicyJSON]]  # absent from summaries written before it
    rounds: NotRequired[RoundsJSON]  # only when every policy ran more than once


@dataclass(frozen=True)
class PolicySummary:
    """One policy's run. Fractions in [0, 1] (NaN for an empty run); latencies in ms (NaN when
    nothing was answered); counts are integers. See the module docstring for definitions."""

    effective_accuracy: float
    on_time: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    switches: int
    service_ms: float = math.nan  # mean worker-side service time of the answered requests
    upgrades: float = math.nan
    fallbacks: float = math.nan

    def to_json(self) -> PolicyJSON:
        """Plain JSON values: fractions rounded to 6 digits, ms to 3, NaN as null."""
        return {
            "effective_accuracy": _round(self.effective_accuracy, _FRACTION_DIGITS),
            "on_time": _round(self.on_time, _FRACTION_DIGITS),
            "p50_ms": _round(self.p50_ms, _MS_DIGITS),
            "p99_ms": _round(self.p99_ms, _MS_DIGITS),
            "requests": int(self.requests),
            "errors": int(self.errors),
            "switches": int(self.switches),
            "service_ms": _round(self.service_ms, _MS_DIGITS),
            "upgrades": _round(self.upgrades, _FRACTION_DIGITS),
            "fallbacks": _round(self.fallbacks, _FRACTION_DIGITS),
        }

    @classmethod
    def from_json(cls, d: PolicyJSON) -> PolicySummary:
        """Inverse of `to_json` (null becomes NaN)."""
        def f(x: float | None) -> float:
            return math.nan if x is None else float(x)

        return cls(f(d["effective_accuracy"]), f(d["on_time"]), f(d["p50_ms"]), f(d["p99_ms"]),
                   int(d["requests"]), int(d["errors"]), int(d["switches"]),
                   f(d.get("service_ms")), f(d.get("upgrades")), f(d.get("fallbacks")))


def on_time_mask(frame: RecordFrame, deadline_ms: float | None = None) -> np.ndarray:
    """Answered (200) within `deadline_ms` (default: each record's own deadline), per request.
    Latency equal to the deadline is on time; `_EPS_MS` absorbs the float error of subtracting
    two clock readings in seconds (1.3 - 1.2 s is 100.00000000000009 ms)."""
    deadline = frame.deadline_ms if deadline_ms is None else deadline_ms
    with np.errstate(invalid="ignore"):
        return frame.answered & (frame.latency_ms <= deadline + _EPS_MS)


def credit(frame: RecordFrame, accuracy: Mapping[str, float], basis: Basis,
           on_time: np.ndarray) -> np.ndarray:
    """Per-request score whose mean is the effective accuracy: accuracy[variant] (declared) or
    correct (labels) where `on_time`, else 0. Raises ValueError for an unknown variant or an
    on-time answer without a label."""
    _check_basis(basis)
    if basis == "declared":
        unknown = sorted({str(v) for v in frame.variant[on_time]} - set(accuracy))
        if unknown:
            raise ValueError(f"no declared accuracy for variant(s) {unknown}; "
                             f"known: {sorted(accuracy)}")
        names, code = np.unique(frame.variant.astype(str), return_inverse=True)
        table = np.array([accuracy.get(v, 0.0) for v in names], dtype=np.float64)
        return np.where(on_time, table[code.reshape(-1)] if len(names) else 0.0, 0.0)
    unlabelled = int(np.count_nonzero(on_time & np.isnan(frame.correct)))
    if unlabelled:
        raise ValueError(f"{unlabelled} on-time answer(s) have no label; "
                         "use accuracy basis 'declared' or record labels")
    return np.where(on_time, frame.correct == 1.0, False).astype(np.float64)


def effective_accuracy_at(frame: RecordFrame, accuracy: Mapping[str, float], basis: Basis,
                          deadline_ms: float | None = None) -> float:
    """Effective accuracy as if every request's deadline were `deadline_ms` (default: the
    records' own), recomputed from latencies. A request dropped or failed is never on time,
    whatever the deadline. NaN for an empty frame."""
    if len(frame) == 0:
        return math.nan
    return float(np.mean(credit(frame, accuracy, basis, on_time_mask(frame, deadline_ms))))


def summarize(frame: RecordFrame, accuracy: Mapping[str, float], basis: Basis,
              decisions: ControlTrace | Sequence[str] | None = None) -> PolicySummary:
    """A policy's summary from its records; `decisions` (a control trace, or the decided
    variants period by period) counts switches when given. A live server's control log also
    covers idle time around the run: align and clip it first (`align_offset_s`,
    `ControlTrace.shifted(...).clip(0, frame.duration_s)`). Definitions: module docstring."""
    on_time = on_time_mask(frame)
    n = len(frame)
    answered = frame.latency_ms[frame.answered]
    p50, p99 = np.percentile(answered, [50, 99]) if len(answered) else (math.nan, math.nan)
    service = frame.service_ms[frame.answered]
    service = service[np.isfinite(service)]
    upgrades, fallbacks = _served_as_shares(frame)
    return PolicySummary(
        effective_accuracy=float(np.mean(credit(frame, accuracy, basis, on_time))) if n
        else math.nan,
        on_time=float(np.mean(on_time)) if n else math.nan,
        p50_ms=float(p50),
        p99_ms=float(p99),
        requests=n,
        errors=int(np.count_nonzero(~frame.answered)),
        switches=_switches(frame, decisions),
        service_ms=float(np.mean(service)) if len(service) else math.nan,
        upgrades=upgrades,
        fallbacks=fallbacks,
    )


def _served_as_shares(frame: RecordFrame) -> tuple[float, float]:
    """(upgrades, fallbacks): module docstring."""
    roles = frame.served_as[frame.answered & (frame.served_as != "")]
    if len(roles) == 0:
        return math.nan, math.nan
    return float(np.mean(roles == "upgrade")), float(np.mean(roles == "fallback"))


def _switches(frame: RecordFrame, decisions: ControlTrace | Sequence[str] | None) -> int:
    if isinstance(decisions, ControlTrace):
        return count_switches(decisions)
    if decisions is not None:
        seq = list(decisions)
    else:
        ok = np.flatnonzero(frame.answered)
        order = ok[np.lexsort((frame.request_id[ok], frame.sent_s[ok]))]
        seq = list(frame.variant[order])
    return sum(a != b for a, b in itertools.pairwise(seq))


@dataclass(frozen=True)
class SweepCoverage:
    """What a simulated sweep ran on: `duration_s` simulated seconds of the workload in `paths`
    load paths, `requests` requests in all, the paths drawn with seeds `seeds[0]`..`seeds[1]`."""

    duration_s: float
    requests: int
    paths: int
    seeds: tuple[int, int]

    def __post_init__(self) -> None:
        if self.paths < 1 or self.requests < 0 or self.duration_s < 0:
            raise ValueError(f"deadline sweep coverage needs paths >= 1 and no negative "
                             f"duration or request count, got {self}")
        if self.seeds[1] < self.seeds[0]:
            raise ValueError(f"deadline sweep seeds must be [first, last], got {self.seeds}")


@dataclass(frozen=True)
class SweepResult:
    """The summary's `deadlines` entry: each policy's effective accuracy at each deadline (ms),
    `None` where it is undefined (no request); `source` says whether each policy was simulated
    at each deadline or its measured records re-scored. `coverage`: what a simulated sweep ran
    on, if known. Raises ValueError for an unknown source or a policy whose curve does not have
    one value per deadline."""

    deadline_ms: tuple[float, ...]
    source: Source
    policies: Mapping[str, Sequence[float | None]]
    coverage: SweepCoverage | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"deadline sweep source must be one of {SOURCES}, "
                             f"got {self.source!r}")
        n = len(self.deadline_ms)
        bad = {k: len(v) for k, v in self.policies.items() if len(v) != n}
        if bad:
            raise ValueError(f"deadline sweep has {n} deadlines but these policies have other "
                             f"lengths: {bad}")

    def to_json(self) -> SweepJSON:
        """Plain JSON: accuracies rounded to 6 digits (null for NaN or None), policies in
        `policy_order`, then the coverage fields when known."""
        doc: SweepJSON = {
            "deadline_ms": [float(d) for d in self.deadline_ms],
            "source": self.source,
            "policies": {k: [_round(v, _FRACTION_DIGITS) for v in self.policies[k]]
                         for k in policy_order(self.policies)},
        }
        if self.coverage is not None:
            doc["duration_s"] = self.coverage.duration_s
            doc["requests"] = self.coverage.requests
            doc["paths"] = self.coverage.paths
            doc["seeds"] = list(self.coverage.seeds)
        return doc


NO_SWEEP = SweepResult((), "measured", {})


def deadline_sweep(frames: Mapping[str, RecordFrame], accuracy: Mapping[str, float],
                   basis: Basis, deadlines_ms: Sequence[float],
                   source: Source = "measured") -> SweepResult:
    """The summary's `deadlines` entry: effective accuracy of each policy's records re-scored at
    each deadline (ms). Re-scoring assumes the same requests would have been answered at the
    same times under another deadline, which holds for what was answered but not for what the
    server dropped (a 504 is never on time) nor for a policy that would have chosen otherwise;
    re-running the simulator per deadline (source "simulated") avoids both."""
    return SweepResult(
        deadline_ms=tuple(float(d) for d in deadlines_ms),
        source=source,
        policies={name: tuple(_round(effective_accuracy_at(f, accuracy, basis, d),
                                     _FRACTION_DIGITS) for d in deadlines_ms)
                  for name, f in frames.items()},
    )


def build_summary(deadline_ms: float, basis: Basis, policies: Mapping[str, PolicySummary],
                  deadlines: SweepResult | None = None,
                  simulated: Mapping[str, PolicySummary] | None = None,
                  notes: JSONObject | None = None,
                  replayed: Mapping[str, PolicySummary] | None = None,
                  rounds: RoundsJSON | None = None) -> SummaryDoc:
    """The summary.json document:
    `{"deadline_ms", "accuracy_basis", "policies": {name: PolicySummary.to_json()},
    "deadlines": SweepResult.to_json() ({"deadline_ms": [...], "source": "simulated"|"measured",
    "policies": {name: [effective accuracy at each deadline]}[, "duration_s": simulated seconds,
    "requests": n, "paths": load paths, "seeds": [first, last]]}),
    "simulated": {name: {...}}, "notes": {...}[, "replayed": {name: {...}}]}` (`replayed`:
    each live run simulated with its own service times, `experiment.replay`; only if given)
    `[, "rounds": RoundsJSON]` (`rounds_entry`; only if given: `policies` is then round 1).
    Policy names: `table`, `queue-aware`, `static:<variant>`, `oracle` (listed in that order).
    Without a sweep, `deadlines` has empty lists (source "measured"); without simulated runs,
    `simulated` is {}. Raises ValueError on notes that are not JSON."""
    _check_basis(basis)
    sims = simulated or {}
    doc: SummaryDoc = {
        "deadline_ms": float(deadline_ms),
        "accuracy_basis": basis,
        "policies": {k: policies[k].to_json() for k in policy_order(policies)},
        "deadlines": (deadlines or NO_SWEEP).to_json(),
        "simulated": {k: sims[k].to_json() for k in policy_order(sims)},
        "notes": dict(notes or {}),
    }
    if replayed:
        doc["replayed"] = {k: replayed[k].to_json() for k in policy_order(replayed)}
    if rounds is not None:
        doc["rounds"] = rounds
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"summary is not plain JSON (check notes): {exc}") from exc
    return doc


def rounds_entry(orders: Sequence[Sequence[str]],
                 runs: Mapping[str, Sequence[PolicySummary]]) -> RoundsJSON:
    """The summary's `rounds` entry: `orders[r]`, the policies in the order round r ran them;
    `runs[name][r]`, the policy's run in round r (every round replays the same schedule).
    `mean_effective_accuracy`: each policy's over the rounds; `margin_over_best_static`: each
    switching policy's effective accuracy less the best static variant's, in each round and
    (last) of the means. Raises ValueError if a policy lacks a round."""
    n = len(orders)
    short = [name for name, r in runs.items() if len(r) != n]
    if short:
        raise ValueError(f"every policy needs one run per round ({n}); not {short}")
    names = policy_order(runs)
    per_round = [{k: runs[k][r].effective_accuracy for k in names} for r in range(n)]
    mean = {k: float(np.mean([p[k] for p in per_round])) for k in names}
    return {
        "orders": [list(o) for o in orders],
        "policies": {k: [p.to_json() for p in runs[k]] for k in names},
        "mean_effective_accuracy": {k: _round(v, _FRACTION_DIGITS) for k, v in mean.items()},
        "margin_over_best_static": {k: [_round(m, _FRACTION_DIGITS)
                                        for m in (*(_margin(p, k) for p in per_round),
                                                  _margin(mean, k))]
                                    for k in names if k in SWITCHING},
    }


def _margin(ea: Mapping[str, float], name: str) -> float:
    """`name`'s effective accuracy less the best static variant's (NaN without one)."""
    statics = [v for k, v in ea.items() if static_variant(k) is not None]
    return ea[name] - max(statics) if statics else math.nan


def policy_order(names: Iterable[str]) -> list[str]:
    """Switching policies first, then static ones (in the given order), the oracle, the rest."""
    names = list(names)

    def rank(name: str) -> int:
        if name in SWITCHING:
            return SWITCHING.index(name)
        if static_variant(name) is not None:
            return 2
        return 3 if name == ORACLE else 4

    return sorted(names, key=lambda n: (rank(n), names.index(n)))


def _check_basis(basis: str) -> None:
    if basis not in BASES:
        raise ValueError(f"accuracy basis must be one of {BASES}, got {basis!r}")


def _round(x: float | None, digits: int) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


__all__ = ["PolicyJSON", "PolicySummary", "RoundsJSON", "SummaryDoc", "SweepCoverage", "SweepJSON",
           "SweepResult", "build_summary", "credit", "deadline_sweep",
           "effective_accuracy_at", "on_time_mask", "policy_order", "rounds_entry", "summarize"]
