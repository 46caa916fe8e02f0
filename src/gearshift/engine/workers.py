"""Parent-side handle of one replica worker process: the only code that starts processes.

A `WorkerHandle` spawns the child, watches its pipe from the event loop (`add_reader`), and hands
every message, and the child's exit, to callbacks owned by the pool. It holds no scheduling
logic: the replica's scheduling state lives in `gearshift.engine.roster`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection

import numpy as np

from gearshift.cores import Slot
from gearshift.engine.messages import InferCall, Message, Stop, WorkerConfig, recv, send
from gearshift.engine.shm import SlotWriter


class WorkerHandle:
    def __init__(
        self,
        config: WorkerConfig,
        on_message: Callable[[WorkerHandle, Message], None],
        on_exit: Callable[[WorkerHandle], None],
        slot_bytes: int = 0,
    ) -> None:
        """`slot_bytes` > 0 gives the replica a shared-memory slot of that size for inputs."""
        self._slot = SlotWriter(slot_bytes) if slot_bytes > 0 else None
        if self._slot is not None:
            config = replace(config, slot_name=self._slot.name, slot_size=self._slot.size)
        self.config = config
        self.slot = Slot(config.settings.threads, config.cores)
        self.pid: int | None = None
        self._gone_already = False
        self._on_message = on_message
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        # A fresh interpreter (not fork: the parent runs an event loop and threads) that does
        # not re-import the caller's __main__, talking over one socket pair.
        parent, child = socket.socketpair()
        for end in (parent, child):  # blocking whatever the host's socket.getdefaulttimeout()
            end.setblocking(True)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "gearshift.engine.worker", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            if self._slot is not None:
                self._slot.close()
            raise
        child.close()  # so that the child's death reads as EOF here
        self._conn = Connection(parent.detach())
        self.pid = self._process.pid
        send(self._conn, config)
        self._loop.add_reader(self._conn.fileno(), self._readable)
        # uvloop (libuv) makes a watched fd non-blocking: a message then read half-way met
        # EAGAIN and a live replica was taken for dead (on Ray Serve, whose replicas run
        # uvloop: 9 in 20 s). Messages are read and written whole, blocking.
        os.set_blocking(self._conn.fileno(), True)

    @property
    def worker_id(self) -> int:
        return self.config.worker_id

    def send(self, msg: Message) -> bool:
        """Send a message; False (and the exit callback) if the worker is gone."""
        if self._gone_already:
            return False
        try:
            send(self._conn, msg)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._gone()
            return False

    def call(self, request_id: int, variant: str, inputs: dict[str, np.ndarray]) -> bool:
        """Send one request, its tensors through the slot when they fit; False if gone."""
        refs = self._slot.write(inputs) if self._slot is not None else None
        if refs is None:
            return self.send(InferCall(request_id, variant, inputs))
        return self.send(InferCall(request_id, variant, in_slot=refs))

    def mapped(self) -> None:
        """The replica is loaded and has mapped its slot: the slot's name is no longer needed."""
        if self._slot is not None:
            self._slot.unlink()

    def stop(self) -> None:
        """Ask an idle worker to exit; its exit then arrives through the exit callback."""
        self.send(Stop())

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()

    async def join(self, timeout_s: float = 5.0) -> int | None:
        """Wait for the process to end (killing it after `timeout_s`), release its slot;
        returns its exit code."""
        try:
            return await self._loop.run_in_executor(None, self._process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return await self._loop.run_in_executor(None, self._process.wait, 5.0)
        finally:
            if self._slot is not None:
                self._slot.close()

    def _readable(self) -> None:
        try:
            msg = recv(self._conn)
        except (EOFError, OSError):
            self._gone()
            return
        self._on_message(self, msg)

    def _gone(self) -> None:
        if self._gone_already:
            return
        self._gone_already = True
        self._loop.remove_reader(self._conn.fileno())
        self._conn.close()
        if self._slot is not None:
            self._slot.close()
        self._on_exit(self)
