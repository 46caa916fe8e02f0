"""A `Server` built by the test (settings, policy factory) run on 127.0.0.1 in a thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gearshift.policy import Controller
from gearshift.serving.server import OverheadSource, PolicyFactory, Server, ServerSettings
from gearshift.types import Decision
from gearshift.zoo.spec import PoolSpec
from tests.servers import ScriptedPolicy, run_in_thread


@contextmanager
def serving(spec: PoolSpec, first: Decision, settings: ServerSettings,
            policies: PolicyFactory | None = None, overhead: OverheadSource | None = None
            ) -> Iterator[tuple[str, Server]]:
    """Yield (host:port, server) once ready (asked with the settings' token, if any)."""
    server = Server(spec, Controller(ScriptedPolicy([first])), first, settings, policies,
                    overhead)
    token = {"Authorization": f"Bearer {settings.auth_token}"} if settings.auth_token else {}
    with run_in_thread(server, token) as url:
        yield url, server
