"""Control logs (what the controller saw and chose every period) and variant-over-time segments.

A live server appends one JSON line per period to its control log (`serving.control_loop.
step_json`): `{"t_s", "observation": {"period_s", "arrivals", "rate_rps", "queue_length",
"current": {...}, ...}, "decision": {"variant", "replicas", "threads", "reason"}, "state"}`.
`t_s` is on the server's clock (0 = when its control loop started), not the load generator's,
so `align_offset_s` finds the shift that lines the log up with a run's records. The log is
opened for appending, so one file may hold several server runs; `read_control_log` splits them
where `t_s` goes backwards.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from gearshift.policy import Observation
from gearshift.reports.frame import RecordFrame
from gearshift.types import ControlLine, Decision, DecisionJSON


@dataclass(frozen=True, eq=False)  # numpy columns
class ControlTrace:
    """One entry per control period, in time order.

    `t_s`: when the step ran (end of its observation window), seconds on the controller's clock.
    `period_s`: the window length (s). `arrivals`, `rate_rps`, `queue_length`: what the window
    saw. `variant`, `replicas`, `threads`: the decision taken. `current_*`: what was being
    served when the step ran (the first one is the starting point of the run).
    """

    t_s: np.ndarray
    period_s: np.ndarray
    arrivals: np.ndarray
    rate_rps: np.ndarray
    queue_length: np.ndarray
    variant: np.ndarray
    replicas: np.ndarray
    threads: np.ndarray
    current_variant: np.ndarray
    current_replicas: np.ndarray
    current_threads: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)

    @classmethod
    def from_lines(cls, lines: Sequence[ControlLine]) -> ControlTrace:
        """From parsed control-log lines (the `step_json` shape)."""
        obs = [ln["observation"] for ln in lines]
        dec = [ln["decision"] for ln in lines]
        cur = [o["current"] for o in obs]
        return cls(
            t_s=np.array([float(ln["t_s"]) for ln in lines], dtype=np.float64),
            period_s=np.array([float(o["period_s"]) for o in obs], dtype=np.float64),
            arrivals=np.array([int(o["arrivals"]) for o in obs], dtype=np.int64),
            rate_rps=np.array([float(o["rate_rps"]) for o in obs], dtype=np.float64),
            queue_length=np.array([int(o["queue_length"]) for o in obs], dtype=np.int64),
            variant=np.array([d["variant"] for d in dec], dtype=object),
            replicas=np.array([int(d["replicas"]) for d in dec], dtype=np.int64),
            threads=np.array([int(d["threads"]) for d in dec], dtype=np.int64),
            current_variant=np.array([c["variant"] for c in cur], dtype=object),
            current_replicas=np.array([int(c["replicas"]) for c in cur], dtype=np.int64),
            current_threads=np.array([int(c["threads"]) for c in cur], dtype=np.int64),
        )

    @classmethod
    def from_steps(cls, observations: Sequence[Observation],
                   decisions: Sequence[Decision]) -> ControlTrace:
        """From `policy.Observation`s and `types.Decision`s (a simulator result's
        `observations` and `decisions`), paired in order; observations past the last decision
        (the simulator's final one) are left out."""
        if len(observations) < len(decisions):
            raise ValueError(f"{len(observations)} observations for {len(decisions)} decisions")
        return cls.from_lines([
            {"t_s": o.t_s,
             "observation": {"period_s": o.period_s, "arrivals": o.arrivals,
                             "rate_rps": o.arrivals / o.period_s, "queue_length": o.queue_length,
                             "current": _decision_json(o.current)},
             "decision": _decision_json(d)}
            for o, d in zip(observations, decisions)
        ])

    def shifted(self, offset_s: float) -> ControlTrace:
        """The same trace with `offset_s` subtracted from every time (onto a run's clock)."""
        return replace(self, t_s=self.t_s - offset_s)

    def clip(self, start_s: float, end_s: float) -> ControlTrace:
        """The steps whose window overlaps [start_s, end_s] (s): a server's log also covers idle
        time before and after the run, whose decisions are not the run's."""
        keep = (self.t_s > start_s) & (self.t_s - self.period_s < end_s)
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)})


@dataclass(frozen=True)
class Segment:
    """A variant (and, when known, R x T) served from `start_s` to `end_s` (s, run's clock)."""

    start_s: float
    end_s: float
    variant: str
    replicas: int | None = None
    threads: int | None = None

    @property
    def allocation(self) -> str:
        """`RxT`, or '' when unknown."""
        return "" if self.replicas is None else f"{self.replicas}x{self.threads}"


def read_control_log(path: str | Path, run: int = -1) -> ControlTrace:
    """Read a control log (JSON lines); `run` picks one server run when the file holds several
    (split where `t_s` goes backwards; -1 = the last). Raises ValueError naming the bad line."""
    path = Path(path)
    runs: list[list[ControlLine]] = [[]]
    for line_no, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            t_s = float(line["t_s"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{line_no}: not a control-log line ({exc})") from exc
        if runs[-1] and t_s < runs[-1][-1]["t_s"]:
            runs.append([])
        runs[-1].append(line)
    try:
        chosen = runs[run]
    except IndexError:
        raise ValueError(f"{path}: run {run} asked for, the file holds {len(runs)}") from None
    try:
        return ControlTrace.from_lines(chosen)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: control-log line lacks a field ({exc!r})") from exc


def count_switches(trace: ControlTrace) -> int:
    """Variant changes over the run: the starting variant, then each period's decision."""
    if len(trace) == 0:
        return 0
    seq = [trace.current_variant[0], *trace.variant]
    return sum(a != b for a, b in itertools.pairwise(seq))


def align_offset_s(trace: ControlTrace, frame: RecordFrame,
                   bounds_s: tuple[float, float] | None = None) -> float:
    """The shift (s) with `record time = control time - offset` that best matches the log's
    per-period arrival counts with the records' send times (least squares over every period;
    a coarse search at a quarter period, then refined to 1% of a period).

    When one log covers several runs of the same arrivals (one server, the controller swapped
    between runs), every run matches equally well and the earliest wins: pass `bounds_s`
    (lowest, highest offset to consider, s) around the run's expected offset."""
    if len(trace) == 0 or len(frame) == 0:
        return 0.0
    sent = np.sort(frame.sent_s)
    period = float(np.median(trace.period_s))
    lo = trace.t_s[0] - trace.period_s[0] - sent[-1] - period
    hi = trace.t_s[-1] - sent[0] + period
    if bounds_s is not None:
        lo, hi = max(lo, bounds_s[0]), min(hi, bounds_s[1])
        if lo > hi:
            raise ValueError(f"bounds {bounds_s} leave no offset at which the log meets the run")
    best = _best_offset(trace, sent, np.arange(lo, hi + period / 4, period / 4))
    fine = np.arange(best - period / 2, best + period / 2, period / 100)
    return _best_offset(trace, sent, fine)


def _best_offset(trace: ControlTrace, sent: np.ndarray, offsets: np.ndarray) -> float:
    def sse(offset: float) -> float:
        right = np.searchsorted(sent, trace.t_s - offset, side="right")
        left = np.searchsorted(sent, trace.t_s - trace.period_s - offset, side="right")
        return float(np.sum((trace.arrivals - (right - left)) ** 2))

    return float(min(offsets, key=sse))


def segments_from_control(trace: ControlTrace) -> list[Segment]:
    """What was chosen over time: the starting decision over the first window, then decision k
    from `t_s[k]` to `t_s[k + 1]` (the last for one period). A variant switch takes effect at
    once; an R x T change may take a while to be in force (the log shows the decision)."""
    if len(trace) == 0:
        return []
    starts = np.concatenate([[trace.t_s[0] - trace.period_s[0]], trace.t_s])
    ends = np.concatenate([trace.t_s, [trace.t_s[-1] + trace.period_s[-1]]])
    chosen = [(trace.current_variant[0], trace.current_replicas[0], trace.current_threads[0])]
    chosen += list(zip(trace.variant, trace.replicas, trace.threads))
    segments = [Segment(float(s), float(e), str(v), int(r), int(t))
                for s, e, (v, r, t) in zip(starts, ends, chosen)]
    return _merge(segments)


def segments_from_records(frame: RecordFrame, bin_s: float = 1.0) -> list[Segment]:
    """The variant that answered most requests sent in each `bin_s` bin (no R x T; a tie goes
    to the first by name); bins with no answer are left out (gaps)."""
    ok = frame.answered
    if not np.any(ok):
        return []
    names, code = np.unique(frame.variant[ok].astype(str), return_inverse=True)
    bins = np.floor(frame.sent_s[ok] / bin_s).astype(np.int64)
    pairs, counts = np.unique(np.stack([bins, code]), axis=1, return_counts=True)
    top: dict[int, tuple[int, int]] = {}  # bin -> (count, variant code); ties: lowest code
    for (b, c), n in zip(pairs.T.tolist(), counts.tolist()):
        if b not in top or n > top[b][0]:
            top[b] = (n, c)
    return _merge([Segment(b * bin_s, (b + 1) * bin_s, str(names[c]))
                   for b, (_, c) in sorted(top.items())])


def _merge(segments: list[Segment]) -> list[Segment]:
    """Join neighbours that touch and serve the same variant and allocation."""
    out: list[Segment] = []
    for s in segments:
        prev = out[-1] if out else None
        if (prev is not None and abs(prev.end_s - s.start_s) < 1e-9 and prev.variant == s.variant
                and prev.allocation == s.allocation):
            out[-1] = Segment(prev.start_s, s.end_s, s.variant, s.replicas, s.threads)
        else:
            out.append(s)
    return out


def offered_load(frame: RecordFrame, bin_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Offered load from the records' scheduled times: (bin start s, requests/s per bin)."""
    if len(frame) == 0:
        return np.zeros(0), np.zeros(0)
    n = max(1, int(np.ceil(np.nanmax(frame.scheduled_s) / bin_s + 1e-12)))
    counts, edges = np.histogram(frame.scheduled_s, bins=np.arange(n + 1) * bin_s)
    return edges[:-1], counts / bin_s


def _decision_json(d: Decision) -> DecisionJSON:
    return {"variant": d.variant, "replicas": d.allocation.replicas,
            "threads": d.allocation.threads, "reason": d.reason}
