"""The host loop, one for the server and the simulator: every period, observe, decide, apply.

A `Host` is what the loop drives: the live server (observations from its request window and its
pool, decisions applied to the pool) or the simulator (both computed from simulated state). The
loop owns the order of one period (observe; stop if the host is done; step the controller;
apply the decision; report the step) and the schedule (tick k at `start_s + k * period_s`, fixed,
so that lateness in one period does not shift the next). Time comes in as an argument: the
server passes its clock's reading, the simulator its simulated time; nothing here reads a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from gearshift.policy import Controller, ControlStep, Observation
from gearshift.types import Decision


class Host(Protocol):
    def observe(self, t_s: float) -> Observation:
        """The period that ends at `t_s`, as the host saw it."""
        ...

    def finished(self, obs: Observation) -> bool:
        """Whether the run is over after `obs` (a server never is): `obs` gets no decision."""
        ...

    def apply(self, decision: Decision, t_s: float) -> None:
        """Put `decision` in force at `t_s`."""
        ...


class HostLoop:
    def __init__(self, controller: Controller[Any], period_s: float, start_s: float = 0.0,
                 on_step: Callable[[ControlStep], None] | None = None) -> None:
        if not period_s > 0:
            raise ValueError(f"the control period must be positive, got {period_s!r}")
        self.controller = controller
        self.period_s = period_s
        self.start_s = start_s
        self.on_step = on_step

    def times(self) -> Iterator[float]:
        """When the ticks are due: `start_s + k * period_s` for k = 1, 2, ..."""
        return (self.start_s + k * self.period_s for k in itertools.count(1))

    def tick(self, host: Host, t_s: float) -> Decision | None:
        """One period ending at `t_s`: the decision applied, None if the host is finished."""
        obs = host.observe(t_s)
        if host.finished(obs):
            return None
        decision = self.controller.step(obs)
        host.apply(decision, t_s)
        if self.on_step is not None and self.controller.last is not None:
            self.on_step(self.controller.last)
        return decision
