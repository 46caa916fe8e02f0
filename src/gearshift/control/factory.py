"""The policy registry: every controller name the CLI, the server and the experiment accept,
with its options and its factory (`make_policy`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from gearshift.control.expected import ExpectedTablePolicy
from gearshift.control.policies import QueueAwarePolicy, StaticPolicy, TablePolicy, Upgrading
from gearshift.errors import SpecError
from gearshift.planning.ladders import fallback_ladders, upgrade_ladders
from gearshift.planning.table import PolicyTable
from gearshift.policy import PAPER, QUEUE_AWARE, STATIC, TABLE, Policy, static_variant
from gearshift.profiling.profile import Profile
from gearshift.types import Allocation, Decision, allocations_for

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


def best_allocation(table: PolicyTable, profile: Profile | None, variant: str) -> Allocation:
    """The R x T with the highest mean effective accuracy for `variant` over the planner's load
    grid (the baseline a user would pick for a static deployment); without a grid, the one with
    the highest measured throughput; without a profile, the one the table serves it with, else
    the most replicas."""
    points = [p for p in table.grid if p.variant == variant]
    if points:
        allocs = sorted({(p.replicas, p.threads) for p in points})
        score = {a: np.mean([p.effective_accuracy for p in points
                             if (p.replicas, p.threads) == a]) for a in allocs}
        return Allocation(*max(allocs, key=lambda a: score[a]))
    entries = [e for e in profile.entries if e.variant == variant] if profile else []
    if entries:
        return max(entries, key=lambda e: e.throughput_rps).allocation
    served = [r.decision.allocation for r in table.ranges if r.variant == variant]
    return served[0] if served else allocations_for(table.cores)[0]


@dataclass(frozen=True)
class PolicyRequest:
    """What a policy is built from: the name asked for (`static:resnet50@2x1`), the plan, the
    profile (None if there is none), the pool's variants, the fallback ladders
    the table was planned with, the decision at the lightest load, and controller options."""

    name: str
    table: PolicyTable
    profile: Profile | None
    variants: list[str]
    fallbacks: dict[str, tuple[str, ...]]
    first: Decision
    options: Mapping[str, float]


@dataclass(frozen=True)
class PolicyKind:
    """One entry of the registry: what `--help` says of it, the options (`KEY=VALUE`) it takes
    with their defaults, its factory, whether it is a switching policy (an experiment runs
    those live beside every static variant) and, if it is named other than by its key, how."""

    help: str
    options: Mapping[str, float]
    build: Callable[[PolicyRequest], tuple[Policy[Any], Decision]]
    switching: bool = False
    usage: str = ""


def _float_fields(cls: type[DataclassInstance], names: tuple[str, ...]) -> dict[str, float]:
    """The defaults of the dataclass fields `names` (numbers), in that order."""
    defaults = {f.name: f.default for f in fields(cls)}
    out: dict[str, float] = {}
    for n in names:
        value = defaults[n]
        if not isinstance(value, int | float):
            raise TypeError(f"{cls.__name__}.{n} has no numeric default")
        out[n] = float(value)
    return out


def _with_options(policy: D, options: Mapping[str, float]) -> D:
    """`policy` with the numeric fields named in `options` set (`make_policy` checked the
    names against the kind's options)."""
    return replace(policy, **options)


TABLE_OPTIONS = _float_fields(ExpectedTablePolicy, (
    "jump_z", "rel_uncertainty", "keep_margin", "realloc_margin", "tie_tol", "risk",
    "drain_deadlines"))
PAPER_OPTIONS = _float_fields(TablePolicy, ("alpha_up", "alpha_down", "band", "noise_z",
                                            "jump_z"))


def _table(r: PolicyRequest, rescues: bool, name: str) -> tuple[Policy[Any], Decision]:
    """`table` or `queue-aware`; with a profile, its decisions carry upgrades
    (`Upgrading`)."""
    rate_policy = table_policy(r.table, r.fallbacks, r.options, r.profile)
    if r.profile is None or not r.table.grid:
        if rescues:
            raise SpecError(f"the {name} policy needs the profile (--profile profile.json)")
        return rate_policy, r.first
    policy = Upgrading(QueueAwarePolicy(r.table, r.profile, rate_policy, rescues=rescues,
                                        name=name), upgrade_ladders(r.profile))
    return policy, policy.with_upgrades(r.first)


def _paper(r: PolicyRequest) -> tuple[Policy[Any], Decision]:
    return (_with_options(TablePolicy(r.table, name=PAPER), r.options),
            replace(r.first, fallbacks=()))


def _static(r: PolicyRequest) -> tuple[Policy[Any], Decision]:
    variant, _, alloc = r.name.split(":", 1)[1].partition("@")
    if variant not in r.variants:
        raise SpecError(f"{r.name}: no such variant {variant!r}; choose one of "
                        f"{', '.join(r.variants)}")
    allocation = (_allocation(r.name, alloc, r.table.cores) if alloc
                  else best_allocation(r.table, r.profile, variant))
    decision = Decision(variant, allocation, "static")
    return StaticPolicy(decision, name=r.name), decision


REGISTRY: dict[str, PolicyKind] = {
    TABLE: PolicyKind("the policy table, rate over a change-aware window, bursts the deadline "
                      "holds absorbed by the queue", TABLE_OPTIONS,
                      lambda r: _table(r, rescues=False, name=TABLE), switching=True),
    QUEUE_AWARE: PolicyKind("the table, and a faster variant for a period when the backlog "
                            "says even the fallbacks would miss", TABLE_OPTIONS,
                            lambda r: _table(r, rescues=True, name=QUEUE_AWARE),
                            switching=True),
    PAPER: PolicyKind("the paper's controller: smoothed rate, table ranges, no fallbacks",
                      PAPER_OPTIONS, _paper),
    STATIC: PolicyKind("one variant throughout (static:VARIANT or static:VARIANT@RxT)", {},
                       _static, usage=f"{STATIC}:VARIANT or {STATIC}:VARIANT@RxT"),
}
"""Policy name (for `static`, the part before the colon) -> its kind. The oracle is not here:
it is a hindsight schedule the simulator computes (`sim.oracle`)."""

SWITCHING: tuple[str, ...] = tuple(n for n, k in REGISTRY.items() if k.switching)
"""The switching policies, in the registry's order."""

POLICY_NAMES = ", ".join(k.usage or n for n, k in REGISTRY.items())
"""Every policy name the registry accepts, for help and error texts."""


def options_help() -> str:
    """Each kind's option names, kinds with the same options together, for help texts."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, kind in REGISTRY.items():
        if kind.options:
            groups.setdefault(tuple(kind.options), []).append(name)
    return "; ".join(f"{' and '.join(names)}: {', '.join(keys)}"
                     for keys, names in groups.items())


OPTION_HELP = f"KEY=NUMBER, repeatable: a setting of the controller ({options_help()})"
"""What `--controller-option` takes, for the commands' help."""


def check_options(options: Mapping[str, float]) -> None:
    """SpecError unless some kind of policy takes every one of `options` (for runs of several
    policies, each built with `options_for`)."""
    if options and not any(set(options) <= set(k.options) for k in REGISTRY.values()):
        raise SpecError(f"no controller has every option of {', '.join(sorted(options))}; "
                        f"the options: {options_help()}")


def options_for(name: str, options: Mapping[str, float]) -> dict[str, float]:
    """The `options` the policy `name` is built with when they were given for a kind: all of
    them if its kind takes every one (the table's go to queue-aware, and back), else none (it
    starts from its defaults)."""
    kind = REGISTRY.get(name)
    return dict(options) if kind is not None and set(options) <= set(kind.options) else {}


def make_policy(name: str, table: PolicyTable, profile: Profile | None, variants: list[str],
                options: Mapping[str, float] | None = None) -> tuple[Policy[Any], Decision]:
    """The policy and the decision to start from: what it would pick at the lightest load, or
    for a switching policy, which knows no rate until its first period, `robust_start`. The
    deadline a policy plans for is the one `table` was planned for (a host whose requests
    default to another would otherwise judge its backlog against that one).
    `options`: controller settings by name (`jump_z=3`), checked against the kind's."""
    kind = REGISTRY.get(name) or (REGISTRY[STATIC] if static_variant(name) is not None
                                  else None)
    if kind is None:
        raise SpecError(f"unknown controller {name!r}; use {POLICY_NAMES}")
    unknown = sorted(set(options or {}) - set(kind.options))
    if unknown:
        allowed = ", ".join(f"{k} (default {v:g})" for k, v in kind.options.items()) or "none"
        raise SpecError(f"controller {name!r} has no option {', '.join(unknown)}; its "
                        f"options: {allowed}")
    first = (robust_start(table) if kind.switching and table.grid
             else table.ranges[0].decision)
    # the ladders the table was planned with; for a table planned without, the profile's
    fallbacks = ({v: tuple(f) for v, f in table.fallbacks.items()}
                 or (fallback_ladders(profile) if profile is not None else {}))
    first = replace(first, fallbacks=fallbacks.get(first.variant, ()))
    return kind.build(PolicyRequest(name, table, profile, variants, fallbacks, first,
                                    dict(options or {})))


def robust_start(table: PolicyTable) -> Decision:
    """The candidate with the highest effective accuracy averaged over the planner's load
    grid: where a switching policy starts, before its first period has measured the rate.
    Starting from the lightest load's choice (the heaviest variant) cost a run that opened at
    1.1 x capacity 14 drops in its first second, live, against 2 for static ResNet-18; this
    start costs a run that opens light one period of a lighter variant."""
    keys = sorted({(p.variant, p.replicas, p.threads) for p in table.grid})
    mean = {k: float(np.mean([p.effective_accuracy for p in table.grid
                              if (p.variant, p.replicas, p.threads) == k])) for k in keys}
    variant, replicas, threads = max(keys, key=lambda k: mean[k])
    return Decision(variant, Allocation(replicas, threads), "start: best over the load grid")


def parse_options(items: list[str]) -> dict[str, float]:
    """`KEY=VALUE` strings (numbers) as a dict; SpecError naming the malformed one."""
    out: dict[str, float] = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not key.strip():
            raise SpecError(f"controller option {item!r} is not KEY=NUMBER, e.g. jump_z=3")
    return out


def table_policy(table: PolicyTable, fallbacks: dict[str, tuple[str, ...]],
                 options: Mapping[str, float] | None = None, profile: Profile | None = None
                 ) -> ExpectedTablePolicy | TablePolicy:
    """The rate-driven part of `table` and `queue-aware`: on the planner's grid
    (`ExpectedTablePolicy`, with `options`, reading the host's speed against `profile` if
    given); for a table without one (written by hand), the paper's range lookup with these
    fallbacks."""
    if table.grid:
        return _with_options(ExpectedTablePolicy.from_table(table, fallbacks, profile),
                             options or {})
    return TablePolicy(table, fallbacks=fallbacks)


def _allocation(name: str, text: str, cores: int) -> Allocation:
    """The RxT of `static:V@RxT`, which must use exactly the pool's `cores`."""
    options = ", ".join(str(a) for a in allocations_for(cores))
    try:
        allocation = Allocation.parse(text)
    except ValueError:
        raise SpecError(f"{name}: {text!r} is not an RxT; use one of {options}") from None
    if allocation not in allocations_for(cores):
        raise SpecError(f"{name}: {allocation} does not use the {cores} cores; use one of "
                        f"{options}")
    return allocation
