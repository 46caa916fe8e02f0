"""The cluster controller's view (`gearshift.cluster`): one node's share of the load from
every live node's report, a node that stopped reporting forgotten, the decision handed back."""

from __future__ import annotations

import math

from gearshift.cluster import ClusterControl, ClusterView, NodeReport
from gearshift.policy import Controller, ServiceTimes
from gearshift.types import Allocation, Decision
from tests.servers import ScriptedPolicy

HEAVY, LIGHT = Decision("heavy", Allocation(1, 2)), Decision("light", Allocation(2, 1))


def report(node: str, arrivals: int, current: Decision = HEAVY, queue: int = 0) -> NodeReport:
    threads = current.allocation.threads
    return NodeReport(node=node, period_s=0.5, arrivals=arrivals,
                      arrival_parts=(arrivals // 4,) * 4, queue_length=queue, in_flight=1,
                      completed=arrivals, missed=0, latency_p99_ms=40.0 if arrivals else math.nan,
                      current=current, workers_ready=1,
                      service=(ServiceTimes(current.variant, threads, arrivals, 10.0 * arrivals),))


def test_the_policy_sees_one_nodes_share_and_forgets_a_silent_node() -> None:
    view = ClusterView(period_s=0.5)
    view.add(report("a", 20, queue=2), now_s=10.0)
    view.add(report("b", 40, queue=6), now_s=10.1)
    view.add(report("c", 30, current=LIGHT), now_s=10.2)
    obs = view.observation(t_s=5.0, now_s=10.3)
    assert obs is not None
    assert (obs.arrivals, obs.queue_length, obs.in_flight) == (30, 3, 1)
    assert obs.arrival_parts == (7, 7, 7, 7) and obs.latency_p99_ms == 40.0
    assert obs.current == HEAVY  # what most nodes have in force
    # every node's service times, summed per (variant, threads): the speed is read from all
    assert obs.service == (ServiceTimes("heavy", 2, 60, 600.0), ServiceTimes("light", 1, 30, 300.0))
    # "a" and "b" not heard from for more than three periods: only "c" is left
    view.add(report("c", 8, current=LIGHT), now_s=12.0)
    obs = view.observation(t_s=6.0, now_s=12.0)
    assert obs is not None and (obs.arrivals, obs.current) == (8, LIGHT)
    assert [r.node for r in view.live(12.0)] == ["c"]
    assert ClusterView(0.5).observation(0.0, 0.0) is None


def test_each_node_gets_the_decision_with_the_answer_to_its_report() -> None:
    now = [0.0]
    policy = ScriptedPolicy([LIGHT])
    control = ClusterControl(Controller(policy), HEAVY, 0.5, clock=lambda: now[0])
    assert control.report(report("a", 10)) == HEAVY  # before any tick: the start
    now[0] = 0.5
    assert control.tick() == LIGHT
    assert control.report(report("b", 10)) == LIGHT
    assert policy.seen[-1].arrivals == 10 and control.nodes == 1
    summary = control.summary()
    assert (summary.decision, summary.switches, summary.policy) == (LIGHT, 1, "scripted")
    assert summary.pool_status().workers_ready == 2  # both nodes' latest reports
    now[0] = 10.0  # no node heard from: an idle period, the decision kept in force
    control.tick()
    assert policy.seen[-1].arrivals == 0 and control.nodes == 0


def test_the_applications_arguments_are_checked_and_the_example_config_is_valid() -> None:
    from pathlib import Path

    import pytest
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from gearshift.errors import SpecError
    from gearshift.ray.app import ClusterConfig

    config = ClusterConfig.from_args({"pool": "p.yaml", "policy": "t.json", "nodes": 3,
                                      "period_s": "0.25"})
    assert (config.nodes, config.period_s, config.controller) == (3, 0.25, "table")
    assert config.profile_path() == Path("profile.json")
    for bad, says in (({"pool": "p"}, "needs pool"),
                      ({"pool": "p", "policy": "t", "node": 2}, "unknown argument"),
                      ({"pool": "p", "policy": "t", "nodes": "two"}, "is not an integer"),
                      ({"pool": "p", "policy": "t", "nodes": 0}, "at least 1")):
        with pytest.raises(SpecError, match=says):
            ClusterConfig.from_args(bad)
    example = Path(__file__).parents[1] / "examples" / "ray_serve.yaml"
    schema = ServeDeploySchema.model_validate(yaml.safe_load(example.read_text()))
    (application,) = schema.applications
    assert application.import_path == "gearshift.ray:app"
    ClusterConfig.from_args(application.args)  # every argument it passes is one the app takes
