"""Many nodes in simulation: N simulated pools of one node's cores each, the requests routed
among them, and one controller that sees one node's share (`gearshift.cluster.ClusterView`,
as the Ray application's controller does) and applies each decision on every node.

`node_profile` makes a bigger node on paper from a profiled one: each (variant, T)'s service
samples, measured with every profiled core busy, serve on R = cores / T replicas, and the
saturation throughput grows with R. That assumes the bigger machine's cores serve as the
profiled ones did under the same co-running (no shared cache or memory bandwidth limit): a
plan, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gearshift.cluster import ClusterView, NodeReport
from gearshift.host_loop import HostLoop
from gearshift.policy import Controller, Observation
from gearshift.profiling.profile import AllocationProfile, Profile
from gearshift.sim.engine import make_inputs
from gearshift.sim.records import RequestColumns
from gearshift.sim.sampling import RequestDraws, ServiceSampler
from gearshift.sim.simulator import SimHost, SimSettings
from gearshift.types import Decision

Routing = Literal["round-robin", "random"]


def node_profile(profile: Profile, cores: int) -> Profile:
    """`profile` (of fewer cores) scaled to a node of `cores`: for each variant and thread
    count it has, the R x T that fills the node (R = cores // T), with the samples of the
    profiled entry of that T with the most replicas."""
    if cores < profile.cores:
        raise ValueError(f"a node of {cores} cores is smaller than the profile's {profile.cores}")
    source: dict[tuple[str, int], AllocationProfile] = {}
    for e in profile.entries:
        key = (e.variant, e.threads)
        if key not in source or e.replicas > source[key].replicas:
            source[key] = e
    entries = [
        AllocationProfile(variant=e.variant, replicas=cores // e.threads, threads=e.threads,
                          service_ms=list(e.service_ms),
                          throughput_rps=e.throughput_rps * (cores // e.threads) / e.replicas)
        for e in source.values() if cores // e.threads >= 1
    ]
    return profile.model_copy(update={"cores": cores, "entries": entries})


def route(arrival_s: np.ndarray, nodes: int, seed: int, how: Routing = "round-robin"
          ) -> list[np.ndarray]:
    """Each node's arrivals: in turn (`round-robin`, as a balanced router) or each request to
    a node drawn at random (`random`, a router that knows nothing of the nodes)."""
    if how == "round-robin":
        which = np.arange(len(arrival_s)) % nodes
    else:
        which = np.random.default_rng(seed).integers(0, nodes, len(arrival_s))
    return [arrival_s[which == k] for k in range(nodes)]


@dataclass(frozen=True)
class ClusterResult:
    nodes: tuple[RequestColumns, ...]
    observations: tuple[Observation, ...]  # the controller's: one node's share
    decisions: tuple[Decision, ...]

    def effective_accuracy(self, accuracy: dict[str, float]) -> float:
        """Over every request of every node (declared basis)."""
        n = sum(len(c) for c in self.nodes)
        return sum(len(c) * c.effective_accuracy(accuracy) for c in self.nodes if len(c)) / max(n, 1)


class _ClusterHost:
    """N simulated nodes as one `Host`: observing serves every node up to the tick and reports
    their periods to a `ClusterView`; a decision goes to every node."""

    def __init__(self, nodes: list[SimHost], period_s: float) -> None:
        self.hosts = nodes
        self.view = ClusterView(period_s)
        self.observations: list[Observation] = []
        self.decisions: list[Decision] = []

    def observe(self, t_s: float) -> Observation:
        for k, h in enumerate(self.hosts):
            o = h.observe(t_s)
            self.view.add(NodeReport(str(k), o.period_s, o.arrivals, o.arrival_parts,
                                     o.queue_length, o.in_flight, o.completed, o.missed,
                                     o.latency_p99_ms, o.current, service=o.service), t_s)
        obs = self.view.observation(t_s, t_s)
        assert obs is not None  # every node reported just now
        self.observations.append(obs)
        return obs

    def finished(self, obs: Observation) -> bool:
        return all(h.finished(h.observations[-1]) for h in self.hosts)

    def apply(self, decision: Decision, t_s: float) -> None:
        self.decisions.append(decision)
        for h in self.hosts:
            h.apply(decision, t_s)


def simulate_cluster(profile: Profile, controller: Controller[Any], arrival_s: np.ndarray,
                     deadline_ms: float, initial: Decision, seed: int, nodes: int,
                     settings: SimSettings = SimSettings(), routing: Routing = "round-robin"
                     ) -> ClusterResult:
    """Serve `arrival_s` (the whole cluster's, sorted) on `nodes` nodes of `profile`'s cores,
    one controller for all (`settings.period_s`), each node with its own seeded luck."""
    if nodes < 1:
        raise ValueError(f"a cluster needs at least one node, got {nodes}")
    sampler = ServiceSampler.from_profile(profile)
    hosts = []
    for k, arr in enumerate(route(arrival_s, nodes, seed, routing)):
        draws = RequestDraws.draw(len(arr), seed + k)  # one node: as `simulate` draws
        hosts.append(SimHost(make_inputs(sampler, arr, deadline_ms, draws, settings.drop),
                             initial, settings))
    cluster = _ClusterHost(hosts, settings.period_s)
    loop = HostLoop(controller, settings.period_s)
    for t1 in loop.times():
        if loop.tick(cluster, t1) is None:
            break
    return ClusterResult(tuple(h.cols for h in hosts), tuple(cluster.observations),
                         tuple(cluster.decisions))

