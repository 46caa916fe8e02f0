"""The one host loop: its order within a period and its schedule, as the simulator and the server
run it. The policies are fakes; the server side runs the real `ControlLoop` on a fake clock."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from gearshift.host_loop import HostLoop
from gearshift.policy import Controller, Observation
from gearshift.serving.control_loop import ControlLoop
from gearshift.serving.dataplane import Window
from gearshift.serving.server import Server, ServerSettings
from gearshift.sim.simulator import SimSettings, simulate
from gearshift.types import Allocation, Decision, PoolStatus
from gearshift.zoo.spec import PoolSpec
from tests.servers import ScriptedPolicy
from tests.synthetic import constant_ms, make_profile

A = Allocation(1, 1)


class Alternate:
    """Flips between two variants every period and remembers what it saw."""

    name = "alternate"

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def initial_state(self) -> int:
        return 0

    def decide(self, obs: Observation, state: int) -> tuple[Decision, int]:
        self.seen.append(obs)
        return Decision("a" if state % 2 else "b", A), state + 1


@dataclass
class RecordingHost:
    calls: list[str] = field(default_factory=list)
    ends_after: int = 3

    def observe(self, t_s: float) -> Observation:
        self.calls.append(f"observe {t_s:g}")
        return Observation(t_s, 0.5, 1, 0, 0, 1, 0, math.nan, Decision("a", A))

    def finished(self, obs: Observation) -> bool:
        return sum(c.startswith("observe") for c in self.calls) > self.ends_after

    def apply(self, decision: Decision, t_s: float) -> None:
        self.calls.append(f"apply {decision.variant} {t_s:g}")


def test_a_period_observes_then_decides_then_applies_and_a_finished_host_gets_no_decision(
        ) -> None:
    steps: list[str] = []
    loop = HostLoop(Controller(Alternate()), 0.5, start_s=10.0,
                    on_step=lambda s: steps.append(s.decision.variant))
    host = RecordingHost()
    decisions = []
    for t in loop.times():
        d = loop.tick(host, t)
        if d is None:
            break
        decisions.append(d.variant)
    assert host.calls == ["observe 10.5", "apply b 10.5", "observe 11", "apply a 11",
                          "observe 11.5", "apply b 11.5", "observe 12"]
    assert decisions == steps == ["b", "a", "b"]
    with pytest.raises(ValueError, match="positive"):
        HostLoop(Controller(Alternate()), 0.0)


def test_the_simulator_runs_the_host_loop_one_decision_per_period_but_the_last() -> None:
    profile = make_profile({("a", A): constant_ms(5.0), ("b", A): constant_ms(5.0)},
                           {"a": 0.5, "b": 0.6}, cores=1)
    policy = Alternate()
    arrivals = np.arange(0.05, 2.0, 0.1)
    result = simulate(profile, Controller(policy), arrivals, 100.0, Decision("a", A), seed=1,
                      settings=SimSettings(period_s=0.5))
    assert [o.t_s for o in result.observations] == [0.5, 1.0, 1.5, 2.0]
    assert [d.variant for d in result.decisions] == ["b", "a", "b"]
    assert [o.arrivals for o in result.observations] == [5, 5, 5, 5]
    assert policy.seen == list(result.observations[:3])


class FakeClock:
    """A monotonic clock that advances only when the loop sleeps, each wake-up 30 ms late."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, dt: float) -> None:
        self.now += dt + 0.030
        await asyncio.sleep(0)


class FakePool:
    allocation = A

    def __init__(self) -> None:
        self.switched: list[str] = []

    def status(self) -> PoolStatus:
        return PoolStatus("a", A, 1, 0, 0, 0, 0, 0)

    def apply(self, decision: Decision) -> asyncio.Future[None]:
        self.switched.append(decision.variant)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class FakeMetrics:
    def observe_pool(self, *_: object) -> None:
        pass


class FakeSpec:
    def variant_names(self) -> list[str]:
        return ["a", "b"]


class FakePlane:
    def __init__(self) -> None:
        self.pool = FakePool()
        self.metrics = FakeMetrics()
        self.spec = FakeSpec()

    def take_window(self) -> Window:
        return Window(arrivals=2)


def run_until_seen(policy: Alternate, plane: FakePlane, periods: int,
                   start_after_s: float = 0.0) -> ControlLoop:
    """A ControlLoop on a fake clock (each tick 30 ms late), run `start_after_s` after it was
    made (a server's replicas starting) until `policy` has seen `periods` observations, still
    running then, and stopped."""
    clock = FakeClock()
    loop = ControlLoop(plane, Controller(policy, keep_log=False), 0.5,  # type: ignore[arg-type]
                       clock=clock, sleep=clock.sleep)
    clock.now += start_after_s

    async def main() -> None:
        task = asyncio.create_task(loop.run())
        while len(policy.seen) < periods:
            await asyncio.sleep(0)
        assert not task.done()  # still running
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return loop


def test_the_server_ticks_on_a_fixed_schedule_with_an_injected_clock() -> None:
    policy = Alternate()
    plane = FakePlane()
    run_until_seen(policy, plane, 6)
    # each tick is 30 ms late, but lateness does not add up: tick k is due at k x 0.5 s
    assert [round(o.t_s, 3) for o in policy.seen] == [0.53, 1.03, 1.53, 2.03, 2.53, 3.03]
    assert all(o.rate_rps == 4.0 for o in policy.seen)
    assert plane.pool.switched == ["b", "a", "b", "a", "b", "a"]


def test_control_starts_its_schedule_when_it_starts_not_when_the_server_was_made() -> None:
    """The replicas start between the server's making and its first tick: 8 s there used to
    give 16 ticks at one instant, each observing a 0.5 s period that had not passed."""
    policy = Alternate()
    run_until_seen(policy, FakePlane(), 3, start_after_s=8.0)
    assert [round(o.t_s, 3) for o in policy.seen] == [0.53, 1.03, 1.53]


def test_the_server_starts_with_the_whole_initial_decision(tiny_spec: PoolSpec,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The initial decision's fallbacks are in force once the server is ready, not only from
    the first control tick on (the start used to apply the variant and allocation alone)."""
    initial = Decision("tiny-l", Allocation(1, 1), fallbacks=("tiny-m", "tiny-s"))
    server = Server(tiny_spec, Controller(ScriptedPolicy([initial])), initial,
                    ServerSettings(period_s=60.0))

    async def no_replicas(allocation: Allocation) -> None:  # this test starts no processes
        server.pool._life.allocation = allocation

    monkeypatch.setattr(server.pool._life, "apply", no_replicas)

    async def main() -> None:
        await server._start_pool()
        try:
            assert server.ready and server.pool.allocation == initial.allocation
            assert (server.pool.variant, server.pool.fallbacks) == ("tiny-l", ("tiny-m", "tiny-s"))
        finally:
            for t in server._tasks:
                t.cancel()
            await asyncio.gather(*server._tasks, return_exceptions=True)
            await server.pool.close()

    asyncio.run(main())


def test_a_control_log_line_has_the_shape_the_reports_read() -> None:
    """`step_json` writes `types.ControlLine` (which `reports.control_log` reads): every key."""
    from gearshift.policy import ControlStep
    from gearshift.serving.control_loop import step_json
    from gearshift.types import ControlLine, ObservationJSON

    obs = Observation(1.0, 0.5, 3, 1, 0, 2, 0, math.nan, Decision("a", A))
    line = step_json(ControlStep(obs, Decision("b", A), {"k": 1.0}))
    assert set(line) == set(ControlLine.__annotations__) - {"policy", "unix_s"}
    assert set(line["observation"]) == set(ObservationJSON.__annotations__)
    assert line["observation"]["latency_p99_ms"] is None and line["observation"]["rate_rps"] == 6
    assert line["decision"] == {"variant": "b", "replicas": 1, "threads": 1, "reason": ""}


class FailsOnce(Alternate):
    """Raises on its second decision, then decides again."""

    def decide(self, obs: Observation, state: int) -> tuple[Decision, int]:
        if len(self.seen) == 1:
            self.seen.append(obs)
            raise RuntimeError("decide exploded")
        return super().decide(obs, state)


def test_a_policy_that_raises_costs_one_tick_and_is_reported() -> None:
    policy = FailsOnce()
    plane = FakePlane()
    loop = run_until_seen(policy, plane, 4)
    assert "RuntimeError: decide exploded" in loop.last_error
    assert len(plane.pool.switched) == 3  # ticks 1, 3 and 4 applied a decision; tick 2 none
    assert [round(o.t_s, 2) for o in policy.seen] == [0.53, 1.03, 1.53, 2.03]


def test_the_control_log_rotates_at_its_size_keeping_one_old_file(tmp_path) -> None:
    import json

    clock = FakeClock()
    log = tmp_path / "control.jsonl"
    loop = ControlLoop(FakePlane(), Controller(Alternate(), keep_log=False),  # type: ignore[arg-type]
                       0.5, log_path=log, clock=clock, log_max_bytes=4000)

    async def main() -> None:  # the pool's apply hands back a future: ticks run in a loop
        for _ in range(60):
            clock.now += 0.5
            loop.tick()

    asyncio.run(main())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["control.jsonl", "control.jsonl.1"]
    line = len(log.with_name("control.jsonl.1").read_text().splitlines()[0]) + 1
    assert 4000 - line < (tmp_path / "control.jsonl.1").stat().st_size <= 4000
    assert log.stat().st_size <= 4000
    lines = [json.loads(x) for p in ("control.jsonl.1", "control.jsonl")
             for x in (tmp_path / p).read_text().splitlines()]
    ts = [x["t_s"] for x in lines]
    assert ts == sorted(ts) and ts[-1] == round(60 * 0.5, 3)  # the newest lines, in order
