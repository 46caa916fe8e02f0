"""One controller for many nodes: what each node reports every period, and the observation of
one node's share that the controller's policy (planned for one node's cores) decides on.

Pure: the Ray application (`gearshift.ray`) and the cluster simulator (`gearshift.sim.cluster`)
both use it. Each node's pool counts its own window (arrivals routed to it, answers,
misses) and reports it with its queue and what it has in force; the controller keeps each
node's latest report, forgets a node that has not reported for `stale_periods` periods (it
left, or its pool died), and sees the load as the live nodes' mean: a table planned for one
node's cores at one node's share of the load serves every node, whatever their number.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gearshift.host_loop import HostLoop
from gearshift.policy import ARRIVAL_PARTS, Controller, Observation, ServiceTimes, service_times
from gearshift.types import Allocation, Decision, PoolStatus


@dataclass(frozen=True)
class NodeReport:
    """A node's last period, as its pool saw it (`policy.Observation`'s fields), and its
    counters for the status page."""

    node: str
    period_s: float
    arrivals: int
    arrival_parts: tuple[int, ...]
    queue_length: int
    in_flight: int
    completed: int
    missed: int
    latency_p99_ms: float
    current: Decision
    pid: int = 0  # the node's serving process
    workers_ready: int = 0
    served: int = 0
    failed: int = 0
    expired: int = 0
    rejected: int = 0
    service: tuple[ServiceTimes, ...] = ()  # the period's inferences' service times


@dataclass
class ClusterView:
    """The latest report of every node heard from within `stale_periods` periods."""

    period_s: float
    stale_periods: float = 3.0
    reports: dict[str, tuple[float, NodeReport]] = field(default_factory=dict)

    def add(self, report: NodeReport, now_s: float) -> None:
        self.reports[report.node] = (now_s, report)

    def live(self, now_s: float) -> list[NodeReport]:
        """The nodes heard from lately (those not are forgotten)."""
        horizon = now_s - self.stale_periods * self.period_s
        self.reports = {k: v for k, v in self.reports.items() if v[0] >= horizon}
        return [r for _, r in self.reports.values()]

    def observation(self, t_s: float, now_s: float) -> Observation | None:
        """One node's share of the last period: the live nodes' mean arrivals (and their
        parts), queue, in flight, answers and misses, rounded; the worst p99; in force, what
        most nodes have; every node's service times (the host's speed is read from all of
        them). None if no node is live."""
        nodes = self.live(now_s)
        if not nodes:
            return None
        n = len(nodes)

        def mean(values: list[int]) -> int:
            return round(sum(values) / n)

        parts = [mean([r.arrival_parts[i] if len(r.arrival_parts) == ARRIVAL_PARTS else 0
                       for r in nodes]) for i in range(ARRIVAL_PARTS)]
        p99s = [r.latency_p99_ms for r in nodes if not math.isnan(r.latency_p99_ms)]
        in_force = Counter((r.current.variant, r.current.allocation) for r in nodes)
        (variant, allocation), _ = in_force.most_common(1)[0]
        return Observation(
            t_s=t_s, period_s=self.period_s, arrivals=mean([r.arrivals for r in nodes]),
            queue_length=mean([r.queue_length for r in nodes]),
            in_flight=mean([r.in_flight for r in nodes]),
            completed=mean([r.completed for r in nodes]), missed=mean([r.missed for r in nodes]),
            latency_p99_ms=max(p99s) if p99s else math.nan,
            current=Decision(variant, Allocation(allocation.replicas, allocation.threads)),
            arrival_parts=tuple(parts),
            service=service_times(x for r in nodes for x in r.service))


class ClusterControl:
    """The application's controller as a `host_loop.Host`: observes the live nodes' mean
    (`ClusterView`), steps the policy once per period, and hands the decision to every node
    with the answer to its next report (so each node has it within a period)."""

    def __init__(self, controller: Controller[Any], initial: Decision, period_s: float,
                 clock: Callable[[], float] = time.perf_counter,
                 stale_periods: float = 3.0) -> None:
        self.clock = clock
        self.view = ClusterView(period_s, stale_periods)
        self.decision = initial
        self.t0 = clock()
        self.loop = HostLoop(controller, period_s, self.t0)
        self.nodes = 0
        self.rate_rps = 0.0
        self.switches = 0
        self.allocation_changes = 0
        self.last_error = ""

    @property
    def controller(self) -> Controller[Any]:
        return self.loop.controller

    def report(self, report: NodeReport) -> Decision:
        """A node's period in, the decision in force out."""
        self.view.add(report, self.clock())
        return self.decision

    def tick(self) -> Decision | None:
        return self.loop.tick(self, self.clock())

    # ----- Host -------------------------------------------------------------------------------

    def observe(self, t_s: float) -> Observation:
        obs = self.view.observation(t_s - self.t0, t_s)
        self.nodes = len(self.view.reports)
        if obs is None:  # no node live: an idle period with the decision in force
            obs = Observation(t_s - self.t0, self.view.period_s, 0, 0, 0, 0, 0, math.nan,
                              self.decision, (0,) * ARRIVAL_PARTS)
        self.rate_rps = obs.rate_rps * max(self.nodes, 1)
        return obs

    def finished(self, obs: Observation) -> bool:
        return False

    def apply(self, decision: Decision, t_s: float) -> None:
        self.switches += decision.variant != self.decision.variant
        self.allocation_changes += decision.allocation != self.decision.allocation
        self.decision = decision

    def summary(self) -> ClusterSummary:
        return ClusterSummary(self.decision, tuple(r for _, r in self.view.reports.values()),
                              self.rate_rps, self.controller.policy.name, self.switches,
                              self.allocation_changes, self.last_error)


@dataclass(frozen=True)
class ClusterSummary:
    """What the controller knows, for the ingress's status page and metrics."""

    decision: Decision
    nodes: tuple[NodeReport, ...]
    rate_rps: float
    policy: str
    switches: int
    allocation_changes: int
    last_error: str

    def pool_status(self) -> PoolStatus:
        """The cluster as one pool: the decision in force, the nodes' workers and queues
        summed."""
        return PoolStatus(
            self.decision.variant, self.decision.allocation,
            sum(r.workers_ready for r in self.nodes), sum(r.queue_length for r in self.nodes),
            sum(r.in_flight for r in self.nodes), self.switches, self.allocation_changes, 0)
