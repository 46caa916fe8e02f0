"""Stopping cleanly on SIGTERM: a command that started processes (an experiment's server, a
benchmark's experiments) stops them, by their process ids, when it is itself stopped.

Python's default for SIGTERM ends the process at once, without its `finally` blocks: an
experiment stopped so left its server and the server's workers running, holding the cores and
a port. `exit_on_sigterm` makes a SIGTERM unwind as an exit does; `run_child` runs a command
to its end and stops it by SIGTERM (then SIGKILL) if the caller is stopped first."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from types import FrameType
from typing import IO

SERVER_STOP_S = 60.0
"""How long a server gets after SIGTERM to answer what it holds and stop its workers."""
STOP_WAIT_S = SERVER_STOP_S + 30.0
"""How long a child gets after SIGTERM before SIGKILL: an experiment stops its server first."""


def exit_on_sigterm() -> None:
    """From now on (main thread only), a SIGTERM raises SystemExit(143) where the process is,
    so that every `finally` and context manager on the way out runs."""
    signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, _frame: FrameType | None) -> None:
    # a second SIGTERM while unwinding is ignored: the clean-up is bounded, and cut short it
    # would leave what it was stopping
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def run_child(cmd: Sequence[str], timeout_s: float,
              stdout: int | IO[bytes] | None = subprocess.DEVNULL) -> None:
    """Run `cmd` to its end; a `subprocess.CalledProcessError` if it fails. If the caller is
    stopped first (an error, a signal `exit_on_sigterm` turned into an exit, the timeout),
    the child gets SIGTERM and `STOP_WAIT_S` to stop what it started, then SIGKILL (where
    `subprocess.run` sends SIGKILL at once, and the child's own children live on)."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(list(cmd), stdout=stdout, stdin=subprocess.DEVNULL)
        code = proc.wait(timeout=timeout_s)
    finally:
        if proc is not None:
            stop(proc)
    if code != 0:
        raise subprocess.CalledProcessError(code, list(cmd))


def stop(proc: subprocess.Popen[bytes], wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM `proc` if it runs, then SIGKILL after `wait_s`; waits for it either way."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
