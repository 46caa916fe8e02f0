"""Service and overhead times drawn from a profile's measured samples, by pre-drawn uniforms.

Every request gets three uniforms in [0, 1) when the run starts (`RequestDraws`): one picks its
service sample, one its overhead sample, and one which of two measured loads' overhead samples
it draws from when its load falls between them. The sample *set* is chosen only when the
request is dispatched (variant and allocation in force then), so the random stream does not
depend on the controller's decisions: two policies run on the same seed see the same luck
(common random numbers), which keeps comparisons between policies and between planner
candidates sharp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gearshift.dispatch import RATE_WINDOW_S, UPGRADE_WINDOW_S, PathOverhead
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation


@dataclass(frozen=True)
class RequestDraws:
    """Per-request uniforms in [0, 1): `service_u` picks the service sample, `overhead_u` the
    overhead sample, `level_u` the measured load it is drawn at (`ServiceSampler.overhead`)."""

    service_u: np.ndarray
    overhead_u: np.ndarray
    level_u: np.ndarray

    @classmethod
    def draw(cls, n: int, seed: int | np.random.SeedSequence) -> RequestDraws:
        rng = np.random.default_rng(seed)
        return cls(rng.random(n), rng.random(n), rng.random(n))


def offered_rate_rps(arrival_s: np.ndarray, window_s: float = RATE_WINDOW_S) -> np.ndarray:
    """Per request: the arrivals in (t - window_s, t], itself included, per second."""
    before = np.searchsorted(arrival_s, arrival_s - window_s, side="right")
    return (np.arange(1, len(arrival_s) + 1) - before) / window_s


def upgrade_rate_rps(arrival_s: np.ndarray) -> np.ndarray:
    """Per request: the offered rate the dispatch rule checks an upgrade by, the higher of
    `offered_rate_rps` over `RATE_WINDOW_S` and over `UPGRADE_WINDOW_S` (the live pool's
    `engine.offered_rate.OfferedRate.for_upgrades`)."""
    out: np.ndarray = np.maximum(offered_rate_rps(arrival_s),
                                 offered_rate_rps(arrival_s, UPGRADE_WINDOW_S))
    return out


@dataclass(frozen=True)
class LevelledOverhead:
    """Overhead samples (s) at measured levels of load (ascending)."""

    levels: np.ndarray
    samples_s: tuple[np.ndarray, ...]

    def draw(self, level: np.ndarray, u: np.ndarray, level_u: np.ndarray) -> np.ndarray:
        """A sample for each request at its level: from the measured level nearest below or
        above, the nearer the likelier (linear in between; the lowest below it, the highest
        above it)."""
        pos = np.interp(level, self.levels, np.arange(len(self.levels), dtype=float))
        at_level = np.floor(pos).astype(np.intp)
        at_level += level_u < pos - at_level
        out = np.empty(len(u))
        for k, samples in enumerate(self.samples_s):
            at = at_level == k
            out[at] = _pick(samples, u[at])
        return out


@dataclass(frozen=True)
class PathBound:
    """What a path-bound entry's requests meet on the serving path: the profile's curve of its
    cost by utilization of the cores (`Profile.overhead_by_load`), the utilization each req/s
    of this entry adds (`Profile.utilization`), and the rate the entry answers (its
    throughput, at most the HTTP capacity)."""

    curve: LevelledOverhead
    load_per_rps: float
    capacity_rps: float

    def draw(self, rate_rps: np.ndarray, u: np.ndarray, level_u: np.ndarray) -> np.ndarray:
        """Overhead (s) at each request's offered rate: the curve's sample at the load that
        rate gives, plus, above the entry's capacity, the backlog a second of the excess
        leaves, at the rate it drains. Calibration never loads an entry past 0.9 x that
        capacity, so the curve says nothing of overload; live, a flash crowd to 1.1 x
        capacity made nearly every request late within its first second."""
        drawn = self.curve.draw(rate_rps * self.load_per_rps, u, level_u)
        excess = np.maximum(0.0, rate_rps - self.capacity_rps)
        out: np.ndarray = drawn + excess / self.capacity_rps * RATE_WINDOW_S
        return out


@dataclass(frozen=True)
class ServiceSampler:
    """A profile's samples in seconds, keyed by (variant, allocation): service times, and the
    overhead of a request served while that entry is in force: for a path-bound entry
    (`path_bound`), at the load its rate gives, else the profile's, apart for a request
    dispatched at once (`overhead_s`) and one that waited for a replica (`overhead_busy_s`,
    `Profile.busy_overhead_ms`); and the overhead the dispatch rule counts
    (`Profile.dispatch_overhead_ms`; for a path-bound entry, at the load:
    `Profile.path_overheads`); and the time a replica is held per request beyond its service
    (`AllocationProfile.hold_ms`)."""

    service_s: dict[tuple[str, Allocation], np.ndarray]
    overhead_s: np.ndarray
    overhead_busy_s: np.ndarray
    dispatch_overhead_ms: float
    accuracy: dict[str, float]
    path_bound: dict[tuple[str, Allocation], PathBound] = field(default_factory=dict)
    dispatch_path: dict[tuple[str, Allocation], PathOverhead] = field(default_factory=dict)
    hold_s: dict[tuple[str, Allocation], float] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Profile) -> ServiceSampler:
        def s(ms: list[float]) -> np.ndarray:
            return np.asarray(ms, dtype=np.float64) / 1000.0

        service = {(e.variant, e.allocation): s(e.service_ms) for e in profile.entries}
        levels = profile.overhead_by_load
        bound: dict[tuple[str, Allocation], PathBound] = {}
        if levels:
            curve = LevelledOverhead(np.array([x.utilization for x in levels]),
                                     tuple(s(x.samples_ms) for x in levels))
            bound = {(e.variant, e.allocation): PathBound(curve, profile.utilization(e, 1.0),
                                                          e.throughput_rps)
                     for e in profile.entries if e.path_bound}
        return cls(service, s(profile.overhead_ms), s(profile.busy_overhead_ms()),
                   profile.dispatch_overhead_ms(), dict(profile.accuracy), bound,
                   profile.path_overheads(),
                   {(e.variant, e.allocation): e.hold_ms() / 1000.0 for e in profile.entries})

    def samples_s(self, variant: str, allocation: Allocation) -> np.ndarray:
        try:
            return self.service_s[(variant, allocation)]
        except KeyError:
            raise KeyError(f"profile has no entry for {variant} at {allocation}") from None

    def hold(self, variants: Sequence[str], allocation: Allocation) -> np.ndarray:
        """Per variant, the time (s) a replica is held per request beyond its service
        (`AllocationProfile.hold_ms`; 0 where the profile does not say)."""
        return np.array([self.hold_s.get((v, allocation), 0.0) for v in variants])

    def service(self, variant: str, allocation: Allocation, u: np.ndarray) -> np.ndarray:
        """Service times (seconds) for uniforms `u`, from the (variant, allocation) samples."""
        return _pick(self.samples_s(variant, allocation), u)

    def overhead(self, variant: str, allocation: Allocation, u: np.ndarray,
                 waited: np.ndarray, rate_rps: np.ndarray, level_u: np.ndarray) -> np.ndarray:
        """Serving-path overhead times (seconds) for uniforms `u` while (variant, allocation)
        is in force: for a path-bound entry, at each request's offered rate `rate_rps`
        (`PathBound.draw`: its samples hold any wait to be dispatched, so `waited` is not
        looked at), else the profile's busy samples where `waited` (the request waited for a
        replica) and its others elsewhere."""
        bound = self.path_bound.get((variant, allocation))
        if bound is not None:
            return bound.draw(rate_rps, u, level_u)
        return np.where(waited, _pick(self.overhead_busy_s, u), _pick(self.overhead_s, u))


def _pick(samples: np.ndarray, u: np.ndarray) -> np.ndarray:
    """samples[floor(u * n)]: a draw with replacement from the empirical distribution."""
    idx = (u * len(samples)).astype(np.intp)
    np.minimum(idx, len(samples) - 1, out=idx)  # u < 1, but guard rounding
    return samples[idx]
