"""The live actuator: every period, observe the server, ask the controller, apply its decision
(the order and schedule of `gearshift.host_loop`, which the simulator runs too).

Decisions are put in force by a `serving.actuator.Actuator`: the variant at once, an
allocation change in the background.

The control log (one JSON line per period) is rotated before it would pass `log_max_bytes`:
the full file becomes `NAME.1` (replacing the previous one), so it takes at most twice that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from gearshift.engine.pool import ReplicaPool
from gearshift.host_loop import HostLoop
from gearshift.policy import Controller, ControlStep, Observation, arrival_parts, service_times
from gearshift.serving.actuator import Actuator
from gearshift.serving.dataplane import DataPlane
from gearshift.types import ControlLine, Decision, DecisionJSON, ObservationJSON

log = logging.getLogger("gearshift.control")


class ControlLoop:
    """The server as a `Host` of `gearshift.host_loop.HostLoop`, driven on the event loop."""

    def __init__(self, plane: DataPlane, controller: Controller[Any], period_s: float,
                 log_path: Path | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 wall_clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 log_max_bytes: int = 16 << 20) -> None:
        """`clock`: monotonic seconds for the schedule and the observations' `t_s`;
        `wall_clock`: Unix seconds for the control log; `sleep`: waits that many seconds
        (tests pass fakes)."""
        self.plane = plane
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._log_path = log_path
        self._log_max_bytes = log_max_bytes
        self._log: IO[str] | None = log_path.open("a") if log_path else None
        self.actuator = Actuator(plane.pool)
        self._t0 = clock()
        self.host_loop = HostLoop(controller, period_s, self._t0, self._on_step)
        self.last_rate_rps = 0.0
        self._last_error = ""

    @property
    def pool(self) -> ReplicaPool:
        """The data plane's pool (the one reference to it)."""
        return self.plane.pool

    @property
    def controller(self) -> Controller[Any]:
        return self.host_loop.controller

    @controller.setter
    def controller(self, controller: Controller[Any]) -> None:
        self.host_loop.controller = controller

    @property
    def period_s(self) -> float:
        return self.host_loop.period_s

    async def run(self) -> None:
        """Tick every period from now until cancelled, on the host loop's fixed schedule. The
        schedule starts here, not when the loop was made: the replicas start in between, and
        the ticks due meanwhile would all run at once, each observing a period that had not
        passed."""
        def failed(message: str) -> None:
            self.last_error = message

        self._t0 = self._clock()
        self.host_loop.start_s = self._t0

        try:
            await run_periods(self.host_loop, self._clock, self._sleep, self.tick, failed)
        finally:
            if self._log:
                self._log.close()

    def tick(self) -> Decision:
        """One period, now."""
        decision = self.host_loop.tick(self, self._clock())
        assert decision is not None  # a server is never finished
        return decision

    # ----- Host -------------------------------------------------------------------------------

    def observe(self, t_s: float) -> Observation:
        w = self.plane.take_window()
        st = self.pool.status()
        obs = Observation(
            t_s=t_s - self._t0, period_s=self.period_s, arrivals=w.arrivals,
            queue_length=st.queue_length, in_flight=st.in_flight, completed=w.completed,
            missed=w.missed, latency_p99_ms=w.p99_ms(),
            current=Decision(st.variant, st.allocation),
            arrival_parts=arrival_parts(w.arrival_s, t_s, self.period_s),
            service=service_times(w.service),
        )
        self.last_rate_rps = obs.rate_rps
        return obs

    def finished(self, obs: Observation) -> bool:
        return False

    def apply(self, decision: Decision, t_s: float | None = None) -> None:
        """Apply `decision` to the pool (`Actuator.apply`)."""
        self.actuator.apply(decision)

    def _on_step(self, step: ControlStep) -> None:
        self.plane.metrics.observe_pool(self.pool.status(), self.plane.spec.variant_names(),
                                        step.observation.rate_rps)
        if self._log:
            line: ControlLine = {"policy": self.controller.policy.name,
                                 "unix_s": round(self._wall_clock(), 3), **step_json(step)}
            text = json.dumps(line) + "\n"
            if self._log.tell() + len(text) > self._log_max_bytes and self._log.tell() > 0:
                self._rotate_log()
            self._log.write(text)
            self._log.flush()

    def _rotate_log(self) -> None:
        """The full log becomes NAME.1 (replacing the older one); NAME starts empty."""
        assert self._log is not None and self._log_path is not None
        self._log.close()
        try:
            self._log_path.replace(self._log_path.with_name(self._log_path.name + ".1"))
        except OSError as exc:  # moved or removed meanwhile: start a new file all the same
            log.warning("control log %s not rotated: %s", self._log_path, exc)
        self._log = self._log_path.open("a")

    @property
    def last_error(self) -> str:
        return self._last_error or self.actuator.last_error

    @last_error.setter
    def last_error(self, message: str) -> None:
        self._last_error = message

    async def stop(self) -> None:
        """Wait for an allocation change in progress, if any."""
        await self.actuator.stop()

    async def cancel(self) -> None:
        """Cancel an allocation change in progress, if any (the server is stopping)."""
        await self.actuator.cancel()


async def run_periods(host_loop: HostLoop, clock: Callable[[], float],
                      sleep: Callable[[float], Awaitable[None]], step: Callable[[], object],
                      failed: Callable[[str], None]) -> None:
    """Call `step` at each of `host_loop`'s ticks (fixed schedule) until cancelled; a step that
    raises is logged and said to `failed`: a bad period must not end control for good."""
    for due in host_loop.times():
        await sleep(max(0.0, due - clock()))
        try:
            step()
        except Exception as exc:
            failed(f"control step failed: {type(exc).__name__}: {exc}")
            log.exception("control step failed")


def step_json(step: ControlStep) -> ControlLine:
    """One control-log line: the observation, the decision and the policy's state."""
    o = step.observation
    obs: ObservationJSON = {
        "t_s": o.t_s, "period_s": o.period_s, "arrivals": o.arrivals,
        "queue_length": o.queue_length, "in_flight": o.in_flight, "completed": o.completed,
        "missed": o.missed,
        "latency_p99_ms": None if math.isnan(o.latency_p99_ms) else o.latency_p99_ms,
        "current": _decision_json(o.current), "rate_rps": o.rate_rps,
        "arrival_parts": list(o.arrival_parts),
        "service": [(x.variant, x.threads, x.count, round(x.total_ms, 3)) for x in o.service],
    }
    return {"t_s": round(o.t_s, 3), "observation": obs,
            "decision": _decision_json(step.decision), "state": step.state}


def _decision_json(d: Decision) -> DecisionJSON:
    return {"variant": d.variant, "replicas": d.allocation.replicas,
            "threads": d.allocation.threads, "reason": d.reason}
