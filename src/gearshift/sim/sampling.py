"""Service and overhead times drawn from a profile's measured samples, by pre-drawn uniforms.

Every request gets two uniforms in [0, 1) when the run starts (`RequestDraws`): one picks its
service sample, the other its overhead sample. The sample *set* is chosen only when the request is
dispatched (variant and allocation in force then), so the random stream does not depend on the
controller's decisions: two policies run on the same seed see the same luck (common random
numbers), which keeps comparisons between policies and between planner candidates sharp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gearshift.profiling.profile import Profile
from gearshift.types import Allocation


@dataclass(frozen=True)
class RequestDraws:
    """Per-request uniforms in [0, 1): `service_u` picks the service sample, `overhead_u` the
    overhead sample."""

    service_u: np.ndarray
    overhead_u: np.ndarray

    @classmethod
    def draw(cls, n: int, seed: int | np.random.SeedSequence) -> RequestDraws:
        rng = np.random.default_rng(seed)
        return cls(rng.random(n), rng.random(n))


@dataclass(frozen=True)
class ServiceSampler:
    """A profile's samples in seconds, keyed by (variant, allocation): service times, and the
    overhead of a request dispatched at once and of one that waited for a replica while that
    entry is in force (`Profile.entry_overhead_ms`); and the overhead the dispatch rule counts
    (`Profile.dispatch_overhead_ms`)."""

    service_s: dict[tuple[str, Allocation], np.ndarray]
    overhead_s: dict[tuple[str, Allocation], tuple[np.ndarray, np.ndarray]]
    dispatch_overhead_ms: float
    accuracy: dict[str, float]

    @classmethod
    def from_profile(cls, profile: Profile) -> ServiceSampler:
        def s(ms: list[float]) -> np.ndarray:
            return np.asarray(ms, dtype=np.float64) / 1000.0

        service, overhead = {}, {}
        for e in profile.entries:
            idle, busy = profile.entry_overhead_ms(e)
            service[(e.variant, e.allocation)] = s(e.service_ms)
            overhead[(e.variant, e.allocation)] = (s(idle), s(busy))
        return cls(service, overhead, profile.dispatch_overhead_ms(), dict(profile.accuracy))

    def samples_s(self, variant: str, allocation: Allocation) -> np.ndarray:
        try:
            return self.service_s[(variant, allocation)]
        except KeyError:
            raise KeyError(f"profile has no entry for {variant} at {allocation}") from None

    def service(self, variant: str, allocation: Allocation, u: np.ndarray) -> np.ndarray:
        """Service times (seconds) for uniforms `u`, from the (variant, allocation) samples."""
        return _pick(self.samples_s(variant, allocation), u)

    def overhead(self, variant: str, allocation: Allocation, u: np.ndarray,
                 waited: np.ndarray) -> np.ndarray:
        """Serving-path overhead times (seconds) for uniforms `u` while (variant, allocation)
        is in force: from its waited samples where `waited` (the request waited for a
        replica), else from its dispatched-at-once ones."""
        idle, busy = self.overhead_s[(variant, allocation)]
        return np.where(waited, _pick(busy, u), _pick(idle, u))


def _pick(samples: np.ndarray, u: np.ndarray) -> np.ndarray:
    """samples[floor(u * n)]: a draw with replacement from the empirical distribution."""
    idx = (u * len(samples)).astype(np.intp)
    np.minimum(idx, len(samples) - 1, out=idx)  # u < 1, but guard rounding
    return samples[idx]
