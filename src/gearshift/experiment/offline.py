"""The offline half of an experiment: cached profile, plan, and simulated runs of every policy.

Everything here is deterministic given the profile and the seed; nothing speaks HTTP.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gearshift.control.factory import SWITCHING, make_policy, options_for
from gearshift.control.policies import SchedulePolicy
from gearshift.planning.planner import plan_table
from gearshift.planning.settings import PlanSettings
from gearshift.planning.table import PolicyTable
from gearshift.policy import ORACLE, PAPER, Controller, Policy, static_name
from gearshift.profiling.profile import Profile, load_profile, save_profile
from gearshift.profiling.profiler import ProfileSettings, machine_info, measure
from gearshift.progress import StepCallback as Progress
from gearshift.sim.oracle import oracle_schedule
from gearshift.sim.records import RequestColumns
from gearshift.sim.simulator import SimSettings, simulate
from gearshift.types import Decision
from gearshift.zoo.spec import PoolSpec


def policy_names(variants: list[str]) -> list[str]:
    """The policies an experiment compares: both switching policies and every static variant."""
    return [*SWITCHING, *(static_name(v) for v in variants)]


def _cache_path(spec: PoolSpec, settings: ProfileSettings, cache_dir: Path) -> Path:
    machine = machine_info(settings.cores)
    key = hashlib.sha256(f"{machine.cpu_model}|{settings.cores}|{settings.samples}".encode())
    return cache_dir / f"profile-{spec.digest()}-{key.hexdigest()[:10]}.json"


async def profile_pool(spec: PoolSpec, settings: ProfileSettings, cache_dir: Path,
                       progress: Progress) -> tuple[Profile, bool]:
    """The profile of this pool on this machine and core budget: from `cache_dir` if it was
    measured before, else measured through the real replica pool and stored there. Returns
    (profile, whether it came from the cache)."""
    path = _cache_path(spec, settings, cache_dir)
    if path.is_file():
        return load_profile(path, spec.digest()), True
    profile = await measure(spec, settings, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_profile(profile, path)
    return profile, False


@dataclass(frozen=True)
class SimRun:
    columns: RequestColumns
    decisions: tuple[Decision, ...]  # decisions[k] was taken at the end of period k

    @property
    def decided_variants(self) -> list[str]:
        """The variant decided period by period: a run's switches are counted from these, as
        a live run's from its control log (its answering variants would count each answer a
        fallback gave too)."""
        return [d.variant for d in self.decisions]


def simulate_policy(name: str, profile: Profile, table: PolicyTable, variants: list[str],
                    arrivals_s: np.ndarray, deadline_ms: float, seed: int,
                    period_s: float, duration_s: float,
                    options: Mapping[str, float] | None = None,
                    served_by: Profile | None = None) -> SimRun:
    """One policy on `arrivals_s` in the simulator; `oracle` is the hindsight schedule.
    `options`: the controller's settings by name (`make_policy`). `served_by`: the profile
    the simulated server's service times come from, if not the one the policy and the oracle
    know (a profile that flatters the server, say)."""
    settings = SimSettings(period_s=period_s, duration_s=duration_s)
    policy: Policy[Any]
    if name == ORACLE:
        sched = oracle_schedule(profile, arrivals_s, deadline_ms, seed, period_s)
        policy, initial = SchedulePolicy(sched.decisions, period_s), sched.decisions[0]
    else:
        policy, initial = make_policy(name, table, profile, variants, options)
    result = simulate(served_by or profile, Controller(policy), arrivals_s, deadline_ms, initial,
                      seed, settings)
    return SimRun(result.columns, (initial, *result.decisions))


@dataclass(frozen=True)
class SweepJob:
    """Everything one deadline of a sweep needs (sent to a worker process): load paths of
    `duration_s` each (`paths[i]` drawn, and its service times drawn, with `seeds[i]`)."""

    profile: Profile
    variants: list[str]
    paths: tuple[np.ndarray, ...]
    seeds: tuple[int, ...]
    period_s: float
    duration_s: float
    plan: PlanSettings
    options: Mapping[str, float] = field(default_factory=dict)  # controller options (each
    # policy gets them if its kind takes them all: `options_for`)
    served_by: Profile | None = None  # the simulated server's service times, if not `profile`'s

    @property
    def requests(self) -> int:
        return sum(len(p) for p in self.paths)


def sweep_tables(profile: Profile, deadline_ms: float, plan: PlanSettings, seed: int
                 ) -> dict[bool, PolicyTable]:
    """The tables a deadline of a sweep is served with: with fallbacks (True: every policy
    but `table:paper`) and without (False)."""
    return {fb: plan_table(profile, deadline_ms, plan, fb, seed) for fb in (True, False)}


def path_accuracies(job: SweepJob, deadline_ms: float, tables: dict[bool, PolicyTable],
                    names: list[str]) -> dict[str, list[float]]:
    """Effective accuracy (declared basis) of each named policy on each of the job's paths
    (NaN for a path without requests)."""
    return {name: [simulate_policy(name, job.profile, tables[name != PAPER], job.variants,
                                   path, deadline_ms, seed, job.period_s, job.duration_s,
                                   options_for(name, job.options), job.served_by
                                   ).columns.effective_accuracy(job.profile.accuracy)
                   if len(path) else float("nan")
                   for path, seed in zip(job.paths, job.seeds, strict=True)]
            for name in names}


def sweep_deadline(job: SweepJob, deadline_ms: float) -> dict[str, float]:
    """Effective accuracy (declared basis) of every policy, `table:paper` and the oracle at
    one deadline, with tables planned for it, over the requests of all the job's paths."""
    names = [*policy_names(job.variants), PAPER, ORACLE]
    tables = sweep_tables(job.profile, deadline_ms, job.plan, job.seeds[0])
    per_path = path_accuracies(job, deadline_ms, tables, names)
    sizes = [len(p) for p in job.paths]
    return {name: sum(n * ea for n, ea in zip(sizes, values, strict=True) if n)
            / max(job.requests, 1) for name, values in per_path.items()}


def deadline_sweep(job: SweepJob, deadlines_ms: list[float],
                   progress: Progress = lambda *_: None,
                   workers: int | None = None) -> dict[str, list[float]]:
    """`sweep_deadline` at each deadline: {policy: [effective accuracy per deadline]}.
    Deadlines are independent; `workers` processes (default: the CPUs this process may use)
    share them, one process means none is started. The workers are spawned, so a script that
    calls this with more than one must guard its entry point (`if __name__ == "__main__":`)."""
    n = min(len(deadlines_ms), workers or len(os.sched_getaffinity(0)))
    done: dict[float, dict[str, float]] = {}
    progress(0, len(deadlines_ms), "planning and simulating")
    if n <= 1:
        for d in deadlines_ms:
            done[d] = sweep_deadline(job, d)
            progress(len(done), len(deadlines_ms), f"deadline {d:g} ms done")
    else:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(sweep_deadline, job, d): d for d in deadlines_ms}
            try:
                for f in as_completed(futures):
                    done[futures[f]] = f.result()
                    progress(len(done), len(deadlines_ms), f"deadline {futures[f]:g} ms done")
            except BaseException:  # stopped (a SIGTERM, Ctrl-C) or failed: the deadlines not
                pool.shutdown(wait=False, cancel_futures=True)  # started yet are not run
                raise
    names = list(done[deadlines_ms[0]])
    return {name: [done[d][name] for d in deadlines_ms] for name in names}
