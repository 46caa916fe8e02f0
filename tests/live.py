"""A `Server` built by the test (settings, policy factory) run on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gearshift.policy import Controller
from gearshift.serving.server import PolicyFactory, Server, ServerSettings
from gearshift.types import Decision
from gearshift.zoo.spec import PoolSpec
from tests.servers import ScriptedPolicy


@contextmanager
def serving(spec: PoolSpec, first: Decision, settings: ServerSettings,
            policies: PolicyFactory | None = None) -> Iterator[tuple[str, Server]]:
    """Yield (host:port, server) once ready (asked with the settings' token, if any)."""
    server = Server(spec, Controller(ScriptedPolicy([first])), first, settings, policies)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"127.0.0.1:{settings.port}"
    try:
        _wait_ready(url, {"Authorization": f"Bearer {settings.auth_token}"}
                    if settings.auth_token else {}, 60.0)
        yield url, server
    finally:
        if server._uvicorn is not None:
            server._uvicorn.should_exit = True
        thread.join(60)
        assert not thread.is_alive(), "server did not stop"


def _wait_ready(url: str, headers: dict[str, str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"http://{url}/v2/health/ready", headers=headers, timeout=1.0)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout_s} s")
