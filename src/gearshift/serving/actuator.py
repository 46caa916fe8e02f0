"""Puts a controller's decision in force on a pool: the variant at once, an allocation change
in the background (new replicas may need loading). While a change runs, a newer decision keeps
the allocation in force (the next decision retries it); the controller sees the allocation
actually in force in its next observation. The server's control loop and a cluster node's
share of it both act through one."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from gearshift.engine.pool import ReplicaPool
from gearshift.types import Decision

log = logging.getLogger("gearshift.control")


class Actuator:
    def __init__(self, pool: ReplicaPool) -> None:
        self.pool = pool
        self.last_error = ""
        self._realloc: asyncio.Task[None] | None = None

    def apply(self, decision: Decision) -> None:
        """Apply `decision` to the pool (raises, changing nothing, for an unknown variant)."""
        busy = self._realloc is not None and not self._realloc.done()
        current = self.pool.allocation
        if busy and current is not None:
            decision = replace(decision, allocation=current)
        change = self.pool.apply(decision)
        if not change.done():
            self._realloc = asyncio.get_running_loop().create_task(
                self._reallocate(decision, change))

    async def _reallocate(self, decision: Decision, change: asyncio.Future[None]) -> None:
        try:
            await change
        except Exception as exc:  # keep serving on the old allocation
            self.last_error = f"allocation change to {decision.allocation} failed: {exc}"
            log.exception("allocation change failed")

    async def stop(self) -> None:
        """Wait for an allocation change in progress, if any."""
        if self._realloc is not None and not self._realloc.done():
            await self._realloc

    async def cancel(self) -> None:
        """Cancel an allocation change in progress, if any (the server is stopping): the
        replicas it was starting are killed; those in service stay for the pool to close."""
        if self._realloc is not None and not self._realloc.done():
            self._realloc.cancel()
            await asyncio.gather(self._realloc, return_exceptions=True)
