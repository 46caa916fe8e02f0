"""`PUT /gearshift/controller` on a real server: bounded, serialised, and harmless when wrong."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gearshift.dispatch import PathOverhead
from gearshift.serving.server import ServerSettings
from gearshift.types import Allocation, Decision
from tests.live import serving
from tests.servers import ScriptedPolicy, free_port

pytestmark = pytest.mark.slow

DECISIONS = {"a": Decision("tiny-s", Allocation(1, 1)), "b": Decision("tiny-l", Allocation(2, 1))}


def _factory(calls: list[str], overlap: list[int] | None = None):
    busy = [0]
    guard = threading.Lock()

    def build(name: str):
        calls.append(threading.current_thread().name)
        if overlap is not None:  # how many builds run at once
            with guard:
                busy[0] += 1
                overlap.append(busy[0])
            time.sleep(0.05)
            with guard:
                busy[0] -= 1
        if name == "broken":
            raise ValueError("the policy file does not parse")
        if name not in DECISIONS:
            from gearshift.errors import SpecError
            raise SpecError(f"no policy {name!r}")
        return ScriptedPolicy([DECISIONS[name]], name=name), DECISIONS[name]

    return build


def test_controller_put_is_bounded_serialised_and_keeps_the_window(tiny_spec) -> None:
    calls: list[str] = []
    overlap: list[int] = []
    settings = ServerSettings(port=free_port(), period_s=3600.0)
    with serving(tiny_spec, DECISIONS["a"], settings, _factory(calls, overlap)) as (url, server):
        put = f"http://{url}/gearshift/controller"
        r = httpx.put(put, content=b'{"controller":' * 100_000, timeout=30)
        assert r.status_code in (400, 413), r.text
        r = httpx.put(put, content=b"[" * 3000, timeout=30)
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
        r = httpx.put(put, content=json.dumps({"controller": "a" * 10_000}).encode(), timeout=30)
        assert r.status_code == 413, r.text
        r = httpx.put(put, json={"controller": "b", "policy": "/etc/passwd"}, timeout=30)
        assert r.status_code == 400 and "unknown keys ['policy']" in r.json()["error"], r.text
        assert server.loop.controller.policy.name == "scripted"
        r = httpx.put(put, json={"controller": "broken"}, timeout=30)
        assert r.status_code == 400 and "could not be built" in r.json()["error"], r.text
        assert "does not parse" not in r.text  # the exception's text stays in the log
        assert server.loop.controller.policy.name == "scripted"  # kept what it had
        server.plane.window.arrivals = 7  # as if seven requests came this period
        r = httpx.put(put, json={"controller": "b"}, timeout=60)
        assert r.status_code == 200 and r.json()["policy"] == "b", r.text
        assert server.plane.window.arrivals == 7  # the next tick still sees them
        assert calls and all(c.startswith("asyncio") for c in calls)  # built off the loop
        with ThreadPoolExecutor(8) as ex:
            names = ["a", "b"] * 4
            answers = list(ex.map(lambda n: httpx.put(put, json={"controller": n}, timeout=120),
                                  names))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert max(overlap) == 1  # one change at a time
        st = httpx.get(f"http://{url}/gearshift/status", timeout=10).json()
        final = DECISIONS[st["policy"]]
        assert (st["variant"], st["replicas"], st["threads"]) == (
            final.variant, final.allocation.replicas, final.allocation.threads)


def test_a_policy_that_raises_is_shown_in_status_and_control_goes_on(tiny_spec) -> None:
    from gearshift.policy import Controller
    from gearshift.serving.server import Server
    from tests.servers import run_in_thread

    class Flaky(ScriptedPolicy):
        def decide(self, obs, state):
            if len(self.seen) == 2:
                self.seen.append(obs)
                raise ZeroDivisionError("the policy divided by zero")
            return super().decide(obs, state)

    first = DECISIONS["a"]
    policy = Flaky([first], name="flaky")
    server = Server(tiny_spec, Controller(policy), first,
                    ServerSettings(port=free_port(), period_s=0.1))
    with run_in_thread(server) as url:
        end = time.monotonic() + 20
        while len(policy.seen) < 6:
            assert time.monotonic() < end, "the control loop stopped"
            time.sleep(0.05)
        st = httpx.get(f"http://{url}/gearshift/status", timeout=5).json()
        assert "ZeroDivisionError: the policy divided by zero" in st["last_error"], st
        assert st["policy"] == "flaky" and st["last_decision"]["variant"] == "tiny-s"
        r = httpx.post(f"http://{url}/v2/models/tiny/infer", timeout=10, json={"inputs": [
            {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}]})
        assert r.status_code == 200


def test_a_controller_switch_retunes_the_dispatch_rule_from_the_profile(tiny_spec) -> None:
    """The overhead the pool's drop rule counts, and the path-bound entries' cost by load, are
    read again with each switch (an experiment calibrates the profile through the running
    server); what the rule then does with them is `test_dispatch.test_a_new_overhead_moves_the_
    rule` and `test_dispatch.test_a_path_bound_entry_is_judged_by_its_path_cost_at_the_pool_
    offered_rate`."""
    curve = PathOverhead(load_per_rps=0.001, utilization=(0.1, 0.9), median_ms=(2.0, 20.0))
    read: list[tuple[float, dict[tuple[str, int], PathOverhead]] | None] = [
        None, (40.0, {("tiny-s", 1): curve})]
    settings = ServerSettings(port=free_port(), period_s=3600.0)
    with serving(tiny_spec, DECISIONS["a"], settings, _factory([]),
                 lambda: read.pop(0)) as (url, server):
        put = f"http://{url}/gearshift/controller"
        before = server.pool.settings.overhead_ms
        assert httpx.put(put, json={"controller": "a"}, timeout=60).status_code == 200
        assert server.pool.settings.overhead_ms == before  # None: kept
        assert server.pool.settings.path_overhead == {}
        assert httpx.put(put, json={"controller": "a"}, timeout=60).status_code == 200
        assert server.pool.settings.overhead_ms == 40.0
        assert server.pool.settings.path_overhead == {("tiny-s", 1): curve}
