"""Calibrating a profile through the live server.

The profile is measured in-process, with the replica pool alone on the cores. Served through
HTTP, the front end and the load generator share those cores, and every request costs more:
on the 2-core reference machine ResNet-50's median service time rose ~25 % and the pool's
answered rate fell ~30 %. A plan made from the in-process figures then picks variants that miss
the deadline live. So an experiment re-measures, through the running server, the serving path's
overhead (at rest, and of the requests that waited for a busy replica: the front end then takes
longer, 5.6-6.8 ms mean against 3.5 live), every (variant, RxT)'s service times under load, and
the rate the front end answers, and plans again from those.

`with_service` (pure) puts live samples into a profile; `calibrate` (side effects: HTTP) measures
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gearshift.experiment.live import (
    measure_capacity_rps,
    measure_overhead_ms,
    measure_service_ms,
    set_controller,
)
from gearshift.loadgen.payloads import Payload
from gearshift.policy import static_name
from gearshift.profiling.profile import AllocationProfile, Profile
from gearshift.progress import StepCallback as Progress


MIN_BUSY_SAMPLES = 20
"""Fewer requests than this waited for a replica: the busy overhead is left unmeasured (the idle
samples stand for it)."""


@dataclass(frozen=True)
class CalibrationSettings:
    """`load`: the offered rate, as a fraction of each entry's profiled throughput (near
    saturation, where the front end costs the most). Each entry gets `seconds` of Poisson
    arrivals, at least `min_count` and at most `max_count` requests."""

    load: float = 0.9
    seconds: float = 2.5
    min_count: int = 12
    max_count: int = 40
    seed: int = 0


@dataclass(frozen=True)
class Calibration:
    profile: Profile  # with live overhead and service samples
    http_capacity_rps: float  # answered rate of the fastest variant, offered more than it takes


def with_service(profile: Profile, samples: dict[tuple[str, int, int], list[float]],
                 note: str) -> Profile:
    """`profile` with each (variant, R, T) in `samples` holding those service times (ms); its
    throughput is scaled by the ratio of mean service times (the profile's saturation rate, at
    the live cost per request). Entries without samples are kept as they were."""
    entries = []
    for e in profile.entries:
        live = samples.get((e.variant, e.replicas, e.threads), [])
        if live:
            ratio = float(np.mean(e.service_ms)) / float(np.mean(live))
            e = AllocationProfile(variant=e.variant, replicas=e.replicas, threads=e.threads,
                                  service_ms=[round(x, 4) for x in live],
                                  throughput_rps=e.throughput_rps * ratio)
        entries.append(e)
    return profile.model_copy(update={"entries": entries, "calibration": note})


def calibrate(url: str, profile: Profile, probe: list[Payload], settings: CalibrationSettings,
              progress: Progress) -> Calibration:
    """Measure the serving path's overhead, every entry's service times and the HTTP capacity
    through the server at `url` (left on the last entry's static policy). `probe` payloads
    should carry no tight deadline, so that nothing is dropped."""
    n = len(profile.entries)
    fastest = min(profile.entries, key=lambda e: e.percentile_ms(50))
    progress(0, n + 2, "serving path overhead")
    overhead = measure_overhead_ms(url, fastest.variant, fastest.percentile_ms(50), probe)
    samples: dict[tuple[str, int, int], list[float]] = {}
    busy: list[float] = []
    for i, e in enumerate(profile.entries):
        progress(i + 1, n + 2, f"{e.variant} {e.allocation}: service time under load")
        rate = settings.load * e.throughput_rps
        count = int(np.clip(rate * settings.seconds, settings.min_count, settings.max_count))
        measured = measure_service_ms(
            url, static_name(e.variant, str(e.allocation)), e.variant, rate, count, probe,
            settings.seed + i)
        samples[(e.variant, e.replicas, e.threads)] = measured.service_ms
        busy += measured.busy_overhead_ms
    calibrated = with_service(profile, samples, f"live through {url}: overhead (idle and "
                              f"beside busy replicas) and service times at {settings.load:g} x "
                              "profiled throughput")
    if overhead:
        calibrated = calibrated.model_copy(
            update={"overhead_ms": [round(x, 4) for x in overhead]})
    if len(busy) >= MIN_BUSY_SAMPLES:
        calibrated = calibrated.model_copy(
            update={"overhead_busy_ms": [round(x, 4) for x in busy]})
    progress(n + 1, n + 2, "HTTP capacity")
    top = max(calibrated.entries, key=lambda e: e.throughput_rps)
    set_controller(url, static_name(top.variant, str(top.allocation)))
    capacity = measure_capacity_rps(url, top.variant, probe, 1.5 * top.throughput_rps)
    progress(n + 2, n + 2, "calibrated")
    return Calibration(calibrated, capacity)
