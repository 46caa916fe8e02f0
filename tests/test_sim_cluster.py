"""Many nodes in simulation (`gearshift.sim.cluster`): one node is the single-server simulator,
a load step moves every node at once, and a profile scaled to a bigger node."""

from __future__ import annotations

import numpy as np

from gearshift.control.policies import SchedulePolicy
from gearshift.policy import Controller
from gearshift.sim.cluster import node_profile, route, simulate_cluster
from gearshift.sim.simulator import SimSettings, simulate
from gearshift.types import Allocation, Decision
from tests.servers import ScriptedPolicy
from tests.synthetic import exponential_ms, make_profile

A2 = Allocation(2, 1)


def profile():  # type: ignore[no-untyped-def]
    samples = {("slow", A2): exponential_ms(60.0), ("fast", A2): exponential_ms(8.0)}
    return make_profile(samples, {"slow": 0.9, "fast": 0.6}, cores=2)


def test_one_node_is_the_single_server_simulator() -> None:
    arrivals = np.sort(np.random.default_rng(1).uniform(0, 20, 300))
    schedule = SchedulePolicy(tuple(Decision("slow" if k % 6 < 3 else "fast", A2)
                                    for k in range(40)))
    one = simulate(profile(), Controller(schedule), arrivals, 300.0, Decision("slow", A2), 7,
                   SimSettings(period_s=0.5))
    cluster = simulate_cluster(profile(), Controller(schedule), arrivals, 300.0,
                               Decision("slow", A2), 7, nodes=1,
                               settings=SimSettings(period_s=0.5))
    np.testing.assert_array_equal(cluster.nodes[0].completed_s, one.columns.completed_s)
    assert cluster.decisions == one.decisions
    acc = {"slow": 0.9, "fast": 0.6}
    assert cluster.effective_accuracy(acc) == one.columns.effective_accuracy(acc)


def test_every_node_gets_each_decision_and_the_controller_sees_one_nodes_share() -> None:
    arrivals = np.sort(np.random.default_rng(2).uniform(0, 10, 800))  # 80 req/s in all
    policy = ScriptedPolicy([Decision("slow", A2), Decision("fast", A2)])
    res = simulate_cluster(profile(), Controller(policy), arrivals, 300.0, Decision("slow", A2),
                           3, nodes=4, settings=SimSettings(period_s=0.5))
    assert len(res.nodes) == 4 and sum(len(c) for c in res.nodes) == 800
    # 40 arrivals a period in all: the controller sees a node's 10
    assert 8 <= np.mean([o.arrivals for o in policy.seen[1:19]]) <= 12
    for cols in res.nodes:  # the switch at the first tick reached every node
        late = cols.arrival_s > 1.0
        assert set(cols.variant_names()[late & cols.answered]) == {"fast"}


def test_routing_balances_and_a_bigger_node_scales_the_profile() -> None:
    arrivals = np.arange(100, dtype=float)
    parts = route(arrivals, 3, seed=0)
    assert [len(p) for p in parts] == [34, 33, 33]
    assert sum(len(p) for p in route(arrivals, 3, seed=0, how="random")) == 100
    big = node_profile(profile(), 16)
    e = big.entry("slow", Allocation(16, 1))
    assert big.cores == 16 and e.throughput_rps == 8 * profile().entry("slow", A2).throughput_rps
