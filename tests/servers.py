"""A real gearshift server on 127.0.0.1 in a background thread, for tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from gearshift.policy import Controller, Observation
from gearshift.serving.server import Server, ServerSettings
from gearshift.types import Allocation, Decision
from gearshift.zoo.spec import PoolSpec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ScriptedPolicy:
    """A fake policy for server tests: plays a list of decisions, then holds the last."""

    script: list[Decision]
    name: str = "scripted"
    seen: list[Observation] = field(default_factory=list)

    def initial_state(self) -> int:
        return 0

    def decide(self, obs: Observation, state: int) -> tuple[Decision, int]:
        self.seen.append(obs)
        return self.script[min(state, len(self.script) - 1)], state + 1


@contextmanager
def running_server(spec: PoolSpec, script: list[Decision] | None = None,
                   settings: ServerSettings | None = None) -> Iterator[tuple[str, Server]]:
    """Yield (host:port, server) once ready; stop the server and its workers afterwards."""
    first = Decision(spec.variant_names()[0], Allocation(2, 1))
    policy = ScriptedPolicy(script or [first])
    settings = settings or ServerSettings(port=free_port(), period_s=0.2)
    server = Server(spec, Controller(policy), policy.script[0], settings)
    with run_in_thread(server) as url:
        yield url, server


@contextmanager
def run_in_thread(server: Server, headers: dict[str, str] | None = None) -> Iterator[str]:
    """Serve `server` in a background thread; yield its host:port once ready (asked with
    `headers`); stop it and its workers afterwards."""
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"127.0.0.1:{server.settings.port}"
    try:
        _wait_ready(url, 60.0, headers or {})
        yield url
    finally:
        if server._uvicorn is not None:
            server._uvicorn.should_exit = True
        thread.join(60)
        assert not thread.is_alive(), "server did not stop"


def _wait_ready(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://{url}/v2/health/ready", headers=headers or {}, timeout=1.0)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout_s} s")


def status(url: str) -> dict[str, Any]:
    return httpx.get(f"http://{url}/gearshift/status", timeout=5.0).json()
