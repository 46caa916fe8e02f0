"""The profile file: measured service times per (variant, replicas R, threads T) on one machine.

Written by `gearshift profile`, read by the planner and the simulator. It records the machine,
the versions and the pool spec's digest, and `load_profile(path, spec)` refuses it for any
other pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gearshift.dispatch import PathOverhead
from gearshift.errors import SpecError
from gearshift.files import read_json_model
from gearshift.types import Allocation

PROFILE_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MachineInfo(_Model):
    cpu_model: str
    cores: int
    platform: str
    python: str
    onnxruntime: str


class LoadOverhead(_Model):
    """The serving path's time beyond service (latency minus service time: the front end, the
    hand-offs, any wait to be dispatched) of the answered requests of calibration runs through
    the live server that kept the cores `utilization` busy (`Profile.utilization`). Measured for
    entries far faster than the HTTP path, where that time, not the model, decides who is on
    time, and grows as the front end, the load generator and the replicas fill the cores."""

    utilization: float = Field(ge=0)
    samples_ms: list[float] = Field(min_length=1)


class AllocationProfile(_Model):
    """One (variant, R, T), measured with all R replicas busy (saturated, closed loop)."""

    variant: str
    replicas: int = Field(ge=1)
    threads: int = Field(ge=1)
    service_ms: list[float] = Field(min_length=1, description="per-request service samples")
    throughput_rps: float = Field(gt=0, description="measured saturation throughput")
    path_bound: bool = Field(
        default=False,
        description="far faster than the HTTP path: its requests' overhead is drawn from the "
                    "profile's `overhead_by_load` at the utilization its rate gives")

    @property
    def allocation(self) -> Allocation:
        return Allocation(self.replicas, self.threads)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.service_ms, q))

    def hold_ms(self) -> float:
        """Time (ms) a replica turns over a request in beyond its service time, as the
        saturation throughput says: R requests per R / throughput seconds, less the mean
        service time (0 if that is negative). It holds the hand-offs of the request to the
        replica and of the answer back, which the worker's timer leaves out (the pool measures
        them: `InferResult.handoff_ms`, 0.9-1.2 ms a request for ResNet-18 2x1 live at 20-50
        requests/s), and whatever else keeps a saturated replica from its next request (the
        pool's process waiting for a core the replicas fill): ResNet-18 2x1, 3.6 ms. A
        path-bound entry's throughput is the HTTP path's, and the path's curve stands for its
        cost: 0."""
        if self.path_bound:
            return 0.0
        return max(0.0, self.replicas * 1000.0 / self.throughput_rps
                   - float(np.mean(self.service_ms)))

    def service_core_ms(self) -> float:
        """Core time (ms) of a request's service: its mean service time on its threads."""
        return self.threads * float(np.mean(self.service_ms))


class Profile(_Model):
    version: int = PROFILE_VERSION
    application: str
    pool_digest: str
    cores: int = Field(ge=1, description="the core budget every allocation uses")
    machine: MachineInfo
    created: str = Field(description="ISO 8601 time of measurement")
    overhead_ms: list[float] = Field(
        min_length=1, description="per-request serving-path overhead samples, beyond service time"
    )
    overhead_busy_ms: list[float] = Field(
        default_factory=list,
        description="the same for requests that waited for a replica, measured through the live "
                    "server with the replicas near saturation (the front end then shares the "
                    "cores with busy replicas and takes longer); empty: `overhead_ms` for both")
    frontend_cpu_ms: float = Field(
        default=0.0, ge=0,
        description="core time the HTTP path (front end and load generator) takes per "
                    "request, from the HTTP capacity: cores / capacity minus the service "
                    "core time of the entry it was measured with")
    overhead_by_load: list[LoadOverhead] = Field(
        default_factory=list,
        description="the serving path's time beyond service by utilization of the cores, "
                    "lowest first, for path-bound entries")
    accuracy: dict[str, float] = Field(description="variant -> accuracy, copied from the spec")
    entries: list[AllocationProfile] = Field(min_length=1)
    calibration: str = Field(
        default="", description="how the samples were re-measured through the live server, "
                                "if they were (empty: in-process only)")

    def entry(self, variant: str, allocation: Allocation) -> AllocationProfile:
        for e in self.entries:
            if e.variant == variant and e.allocation == allocation:
                return e
        raise KeyError(f"profile has no entry for {variant} at {allocation}")

    def variants(self) -> list[str]:
        return list(dict.fromkeys(e.variant for e in self.entries))

    def allocations(self) -> list[Allocation]:
        return sorted({e.allocation for e in self.entries}, reverse=True)

    def service_samples_ms(self, variant: str, allocation: Allocation) -> np.ndarray:
        return np.asarray(self.entry(variant, allocation).service_ms, dtype=np.float64)

    def busy_overhead_ms(self) -> list[float]:
        """The overhead samples of a request that waited for a replica."""
        return self.overhead_busy_ms or self.overhead_ms

    def core_ms(self, e: AllocationProfile) -> float:
        """Core time (ms) a request served by `e` takes, HTTP path included: the load it puts
        on the cores per request."""
        return self.frontend_cpu_ms + e.service_core_ms()

    def utilization(self, e: AllocationProfile, rate_rps: float) -> float:
        """The fraction of the cores busy at `rate_rps` with `e` in force."""
        return rate_rps * self.core_ms(e) / 1000.0 / self.cores

    def path_overheads(self) -> dict[tuple[str, Allocation], PathOverhead]:
        """What the dispatch rule counts for each path-bound entry: the median of each level of
        `overhead_by_load`, by the utilization the entry's requests give (empty without)."""
        if not self.overhead_by_load:
            return {}
        levels = tuple(x.utilization for x in self.overhead_by_load)
        medians = tuple(float(np.median(x.samples_ms)) for x in self.overhead_by_load)
        return {(e.variant, e.allocation): PathOverhead(self.utilization(e, 1.0), levels,
                                                        medians)
                for e in self.entries if e.path_bound}

    def dispatch_overhead_ms(self) -> float:
        """The overhead the dispatch rule counts (`gearshift.dispatch`), in the pool and the
        simulator alike: the mean of a waiting request's, as the rule judges only those; for
        a path-bound entry, its `path_overheads` at the load instead."""
        return float(np.mean(self.busy_overhead_ms()))

    def capacity_rps(self) -> float:
        """The highest measured saturation throughput of any (variant, allocation)."""
        return max(e.throughput_rps for e in self.entries)


def save_profile(profile: Profile, path: str | Path) -> None:
    Path(path).write_text(profile.model_dump_json(indent=1))


def load_profile(path: str | Path, pool_digest: str | None = None) -> Profile:
    """Read a profile; with `pool_digest`, refuse one measured for a different pool."""
    profile = read_json_model(path, Profile, "profile", "gearshift profile")
    if pool_digest is not None and profile.pool_digest != pool_digest:
        raise SpecError(
            f"profile {path} was measured for a different pool (digest {profile.pool_digest}, "
            f"this pool is {pool_digest}): the models or spec changed since; run "
            "`gearshift profile` again for this pool"
        )
    return profile
