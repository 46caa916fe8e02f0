"""A `Server` built by the test (settings, policy factory) run on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gearshift.policy import Controller
from gearshift.serving.server import PolicyFactory, Server, ServerSettings
from gearshift.types import Decision
from gearshift.zoo.spec import PoolSpec
from tests.servers import ScriptedPolicy, _wait_ready


@contextmanager
def serving(spec: PoolSpec, first: Decision, settings: ServerSettings,
            policies: PolicyFactory | None = None) -> Iterator[tuple[str, Server]]:
    """Yield (host:port, server) once ready (readiness asked with `headers`, if any)."""
    server = Server(spec, Controller(ScriptedPolicy([first])), first, settings, policies)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"127.0.0.1:{settings.port}"
    try:
        _wait_ready(url, 60.0)
        yield url, server
    finally:
        if server._uvicorn is not None:
            server._uvicorn.should_exit = True
        thread.join(60)
        assert not thread.is_alive(), "server did not stop"
