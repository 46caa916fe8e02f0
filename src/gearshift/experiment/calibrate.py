"""Calibrating a profile through the live server.

The profile is measured in-process, with the replica pool alone on the cores. Served through
HTTP, the front end and the load generator share those cores, and every request costs more:
on the 2-core reference machine ResNet-50's median service time rose ~25 % and the pool's
answered rate fell ~30 %. A plan made from the in-process figures then picks variants that miss
the deadline live. So an experiment re-measures, through the running server, the serving path's
overhead, every (variant, RxT)'s service times under load, and the rate the front end answers,
and plans again from those. The overhead is taken from the entries' runs under load, apart for
the requests dispatched at once and those that waited for a busy replica (the front end then
takes longer: live, 6.5-7 ms mean against 4.2); a run of requests one at a time measures it
at rest, and the idle pool's figure (2.6 ms) is lower than either.

Where the models are far faster than the HTTP path (the Fashion-MNIST family: 0.1-0.3 ms of
service behind ~2 ms of path), the path is the bottleneck, and its cost grows with the rate as
the front end, the load generator and the replicas share the cores, by how much depending on
what the replicas run. So each entry is loaded at a rate the server can answer (never above
the HTTP capacity, measured first), and an entry fast enough to give `MIN_ENTRY_SAMPLES` in a
short run is also run at lower rates, closer together where the path's cost bends upward. The
runs of every such entry give one curve of the path's cost against the utilization of the
cores (`Profile.overhead_by_load`): the front end's core time per request, from the HTTP
capacity, plus the entry's own service core time, times the rate. It lets the planner see
where the front end, not the variant, decides who is on time, and how much a heavier variant
adds to that load.

`with_service` and `with_overhead` (pure) put live samples into a profile; `calibrate` (side
effects: HTTP) measures them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gearshift.experiment.live import (
    ServiceSamples,
    measure_capacity_rps,
    measure_overhead_ms,
    measure_service_ms,
    set_controller,
)
from gearshift.loadgen.payloads import Payload
from gearshift.policy import static_name
from gearshift.profiling.profile import AllocationProfile, LoadOverhead, Profile
from gearshift.progress import StepCallback as Progress

MIN_LOADED_SAMPLES = 20
"""The overhead of requests dispatched at once (and of those that waited) is taken from the
entries' runs under load when at least this many of them did; else the overhead measured at
rest stands for it (for the busy one: the idle samples)."""

MIN_ENTRY_SAMPLES = 200
"""An entry is path-bound (the path's cost measured by load) when a run at its lowest level
gives at least this many requests (enough for the tail a tight deadline meets), and a level is
kept when its runs hold this many. Only entries far faster than the HTTP path get that many;
the others share the pooled samples."""


@dataclass(frozen=True)
class CalibrationSettings:
    """`load`: the offered rate, as a fraction of the rate the entry can take: its profiled
    throughput, or the rate the server answers through HTTP if that is lower (near
    saturation, where the front end costs the most). Each entry gets `seconds` of Poisson
    arrivals, at least `min_count` requests and at most `max_count`, or `min_seconds` worth
    if that is more (an entry far faster than the front end: its overhead tail needs hundreds
    of samples, and they come quickly)."""

    load: float = 0.9
    seconds: float = 2.5
    min_count: int = 12
    max_count: int = 40
    min_seconds: float = 1.0
    levels: tuple[float, ...] = (0.25, 0.5, 0.625, 0.75, 0.875)
    """Lower rates, as fractions of the entry's load, at which an entry fast enough is run
    again for the path's cost by load."""
    warmup_s: float = 0.5
    """A path-bound entry's run is this much longer, its first requests left out: at a sudden
    1,300 req/s the fashion pool's path took 0.25-0.5 s to settle (half of the first 250 ms
    late at a 10 ms deadline, 0-8 % after)."""
    passes: int = 3
    """Runs of each entry that is not path-bound, one per round over the entries; its service
    samples are their typical run (`typical_run`). A host stall of a few seconds then lands
    in one run of a few entries and is left out: with one run, 3 of 17 live calibrations of
    the ResNet pool had an entry 20-55 % slower than every other calibration measured it,
    and a demo's had ResNet-50 2x1 at a mean 96 ms (its tenth slowest beyond 115) where its
    live static run served at 79: the simulator, from that profile, put static ResNet-50 on
    time 92 % against 98.5 % live."""
    capacity_runs: int = 2
    """Runs of the HTTP capacity's measurement, the highest kept. The first load after the
    server starts meets a cold path: offered 77 requests/s for 2 s, ResNet-18 2x1 answered
    47.5 requests/s in the first run after start and 52.7 in a later one (offered 62: 52.1
    and 52.3). A calibration that measured 47.4 so scaled a step to 1.1 x capacity to 52.9
    requests/s, which static ResNet-18 2x1 served for 10 s with its queue under 0.45 s, while
    the simulator, capped at 47.4, shed 2 % and put its p99 at 1.19 s. A stall in one run is
    left out alike."""
    seed: int = 0

    def count(self, rate_rps: float) -> int:
        """Requests in an entry's run at `rate_rps`."""
        most = max(self.max_count, int(rate_rps * self.min_seconds))
        return int(np.clip(rate_rps * self.seconds, self.min_count, most))


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


def with_overhead(profile: Profile, at_rest: list[float], idle: list[float],
                  busy: list[float]) -> Profile:
    """`profile` with the overhead samples (ms) measured through the server: `idle` (requests
    of the runs under load dispatched at once) if there are `MIN_LOADED_SAMPLES`, else
    `at_rest` (one request at a time), else its own; `busy` (those that waited) likewise, else
    none (the idle ones stand for them)."""
    update: dict[str, list[float]] = {}
    chosen = idle if len(idle) >= MIN_LOADED_SAMPLES else at_rest
    if chosen:
        update["overhead_ms"] = [round(x, 4) for x in chosen]
    if len(busy) >= MIN_LOADED_SAMPLES:
        update["overhead_busy_ms"] = [round(x, 4) for x in busy]
    return profile.model_copy(update=update)


LOAD_BIN = 0.05
"""Runs whose utilizations of the cores lie within this of the lowest in a group make one level
of `Profile.overhead_by_load`."""

MAX_LEVEL_SAMPLES = 2000
"""A level keeps at most this many samples (quantiles on one grid)."""


def frontend_cpu_ms(profile: Profile, top: AllocationProfile, capacity_rps: float) -> float:
    """Core time (ms) the HTTP path takes per request: the cores' time per request at the
    HTTP capacity, less the service core time of `top`, the entry it was measured with."""
    service_core_ms = profile.entry(top.variant, top.allocation).service_core_ms()
    return max(0.0, 1000.0 * profile.cores / capacity_rps - service_core_ms)


def with_load_overhead(profile: Profile, frontend_ms: float,
                       runs: dict[tuple[str, int, int], list[tuple[float, list[float]]]]
                       ) -> Profile:
    """`profile` with the HTTP path's core time per request, and the serving path's cost by
    utilization of the cores from `runs` ((rate, latency minus service of each answered
    request) per run of each entry measured so): each run at the utilization its rate gives
    with its entry (`Profile.utilization`), runs within `LOAD_BIN` one level (their typical
    run, `typical_run`), kept if they hold `MIN_ENTRY_SAMPLES`; the curve is then made no
    faster as the load grows (`monotone`). The entries in `runs` are marked path-bound, and so
    is every entry whose service takes less core time than the path does (`frontend_ms`): one
    whose profiled throughput, read on a busy machine, was too low for runs at the lower
    levels to give `MIN_ENTRY_SAMPLES` is as far faster than the path as the others
    (a Fashion-MNIST calibration left fnet-m 1x2, 0.36 ms of service against 1.5 ms of path,
    unmarked: judged by the busy overhead, 9.4 ms, and held by `table`'s `absorb` through
    8 s of a step it missed a fifth of, simulated 0.056 below static fnet-s). Over every
    entry's runs, a level is robust to one run's stall, and what an entry adds to the load,
    its own core time, is in the utilization."""
    profile = profile.model_copy(update={"frontend_cpu_ms": round(frontend_ms, 4)})
    points = sorted((profile.utilization(e, r), x) for e in profile.entries
                    for r, x in runs.get((e.variant, e.replicas, e.threads), []) if x)
    levels: list[LoadOverhead] = []
    group: list[tuple[float, list[float]]] = []
    for point in [*points, (np.inf, [])]:
        if group and point[0] - group[0][0] > LOAD_BIN:
            count = sum(len(x) for _, x in group)
            if count >= MIN_ENTRY_SAMPLES:
                level = sum(u * len(x) for u, x in group) / count
                levels.append(LoadOverhead(utilization=round(level, 4),
                                           samples_ms=typical_run([x for _, x in group])))
            group = []
        group.append(point)
    entries = [e.model_copy(update={"path_bound": bool(levels) and (
        (e.variant, e.replicas, e.threads) in runs or e.service_core_ms() < frontend_ms)})
        for e in profile.entries]
    return profile.model_copy(update={"overhead_by_load": monotone(levels),
                                      "entries": entries})


def typical_run(runs: list[list[float]]) -> list[float]:
    """The samples of runs at one load as those of a typical run: at each of
    `MAX_LEVEL_SAMPLES` quantiles (fewer if the runs hold fewer samples), the median over the
    runs. A stall of 30-50 ms in one run of a second makes 5-10 % of its requests late at a
    10 ms deadline; pooled, it set the level's tail (9.8 % late at 0.78 of the cores, where
    live runs of 40 s were 0.3-4 % late); the median of the runs leaves it out."""
    n = min(MAX_LEVEL_SAMPLES, max(len(x) for x in runs))
    quantiles = np.median([_on_grid(x, n) for x in runs], axis=0)
    return [round(float(v), 4) for v in quantiles]


def service_samples(runs: dict[tuple[str, int, int], list[list[float]]]
                    ) -> dict[tuple[str, int, int], list[float]]:
    """Each entry's service samples (ms) from its calibration runs: one run's as they are,
    several runs' typical run (`typical_run`); runs that answered nothing are left out, and
    an entry with none is left out (`with_service` keeps its profiled samples)."""
    out: dict[tuple[str, int, int], list[float]] = {}
    for key, x in runs.items():
        kept = [r for r in x if r]
        if kept:
            out[key] = typical_run(kept) if len(kept) > 1 else kept[0]
    return out


def _on_grid(samples: list[float], n: int) -> np.ndarray:
    """`samples` as their n quantiles at (k + 0.5) / n: one grid for runs and levels alike."""
    grid: np.ndarray = np.quantile(np.asarray(samples), (np.arange(n) + 0.5) / n)
    return grid


def monotone(levels: list[LoadOverhead]) -> list[LoadOverhead]:
    """`levels` (ascending utilization) made no faster as the load grows: each level's
    samples, as quantiles on one grid (`MAX_LEVEL_SAMPLES` at most), raised to at least the
    same quantiles of the level below. Near saturation the measured levels are not in order
    (one run's stall, entries that load the cores a little differently than their core time
    says: 40 % late at 0.92 and 17 % at 0.99), and a planner reading them as they are picks
    between variants on noise."""
    if not levels:
        return []
    n = min(MAX_LEVEL_SAMPLES, max(len(x.samples_ms) for x in levels))
    out: list[LoadOverhead] = []
    floor = np.zeros(n)
    for x in levels:
        floor = np.maximum(floor, _on_grid(x.samples_ms, n))
        out.append(LoadOverhead(utilization=x.utilization,
                                samples_ms=[round(float(v), 4) for v in floor]))
    return out


def calibrate(url: str, profile: Profile, probe: list[Payload], settings: CalibrationSettings,
              progress: Progress) -> Calibration:
    """Measure, through the server at `url`, the HTTP capacity (the rate it answers, offered
    more than it takes, with the entry of the highest profiled throughput; the highest of
    `settings.capacity_runs` runs); then every entry's
    service times and the serving path's overhead under load, at `settings.load` x the lower of
    its profiled throughput and that capacity, in `settings.passes` rounds over the entries
    (their typical run; `with_overhead`: at rest only if too few requests of those runs were
    dispatched at once), and, for an entry fast enough, the path's cost at that rate and at
    the lower `settings.levels` in the first round (`with_load_overhead`). Each
    entry's throughput is then at most the HTTP capacity: no entry answers faster than the
    path in front of it. `probe` payloads should carry no tight deadline, so that nothing is
    dropped."""
    n = len(profile.entries)
    passes = max(1, settings.passes)
    steps = n * passes + 2
    progress(0, steps, "HTTP capacity")
    top = max(profile.entries, key=lambda e: e.throughput_rps)
    set_controller(url, static_name(top.variant, str(top.allocation)))
    capacity = max(measure_capacity_rps(url, top.variant, probe, 1.5 * top.throughput_rps)
                   for _ in range(max(1, settings.capacity_runs)))
    rates = [settings.load * min(e.throughput_rps, capacity) for e in profile.entries]
    lowers = [[f * rate for f in settings.levels] for rate in rates]
    bounds = [bool(lower) and min(lower) * settings.min_seconds >= MIN_ENTRY_SAMPLES
              for lower in lowers]
    runs: dict[tuple[str, int, int], list[list[float]]] = {}
    rated: dict[tuple[str, int, int], list[tuple[float, list[float]]]] = {}
    idle: list[float] = []
    busy: list[float] = []
    for round_ in range(passes):
        for i, e in enumerate(profile.entries):
            rate, lower, bound = rates[i], lowers[i], bounds[i]
            if round_ > 0 and bound:  # its many samples over several levels suffice
                continue
            progress(round_ * n + i + 1, steps, f"{e.variant} {e.allocation}: service time "
                     "under load" + (f" (run {round_ + 1})" if round_ else ""))
            run = _Run(url, e.variant, static_name(e.variant, str(e.allocation)), probe,
                       settings, settings.seed + i + round_ * n,
                       settings.warmup_s if bound else 0.0)
            measured = run.at(rate)
            key = (e.variant, e.replicas, e.threads)
            runs.setdefault(key, []).append(measured.service_ms)
            idle += measured.idle_overhead_ms
            busy += measured.busy_overhead_ms
            if bound:
                rated[key] = [(rate, measured.path_ms),
                              *((r, run.at(r).path_ms) for r in lower)]
    samples = service_samples(runs)
    at_rest: list[float] = []
    if len(idle) < MIN_LOADED_SAMPLES:  # too few dispatched at once: one request at a time
        progress(steps - 1, steps, "serving path overhead at rest")
        fastest = min(profile.entries, key=lambda e: e.percentile_ms(50))
        set_controller(url, static_name(fastest.variant, str(fastest.allocation)))
        at_rest = measure_overhead_ms(url, fastest.variant, fastest.percentile_ms(50), probe)
    calibrated = with_service(profile, samples, f"live through {url}: overhead (idle and "
                              f"beside busy replicas) and service times at {settings.load:g} x "
                              "the lower of profiled throughput and HTTP capacity, typical of "
                              f"{passes} runs")
    calibrated = with_overhead(calibrated, at_rest, idle, busy)
    calibrated = with_load_overhead(calibrated, frontend_cpu_ms(calibrated, top, capacity), rated)
    calibrated = capped(calibrated, capacity)
    progress(steps, steps, "calibrated")
    return Calibration(calibrated, capacity)


@dataclass(frozen=True)
class _Run:
    """One entry's calibration runs through the server: Poisson arrivals at a rate, for the
    settings' count of requests plus `warmup_s` worth, left out of the path samples."""

    url: str
    variant: str
    controller: str
    probe: list[Payload]
    settings: CalibrationSettings
    seed: int
    warmup_s: float

    def at(self, rate_rps: float) -> ServiceSamples:
        count = self.settings.count(rate_rps) + int(rate_rps * self.warmup_s)
        return measure_service_ms(self.url, self.controller, self.variant, rate_rps, count,
                                  self.probe, self.seed, warmup_s=self.warmup_s)


def capped(profile: Profile, capacity_rps: float) -> Profile:
    """`profile` with no entry's throughput above `capacity_rps`."""
    entries = [e.model_copy(update={"throughput_rps": min(e.throughput_rps, capacity_rps)})
               for e in profile.entries]
    return profile.model_copy(update={"entries": entries})
