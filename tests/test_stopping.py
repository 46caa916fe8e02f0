"""Stopped by SIGTERM, a command stops what it started: an experiment its server and the
server's workers, a benchmark's `run_child` its child. Real processes, found through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(pid: int) -> set[int]:
    """Every living process below `pid`."""
    parents = {int(d.name): _parent(int(d.name)) for d in Path("/proc").iterdir()
               if d.name.isdigit()}
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pids: set[int]) -> set[int]:
    """Those of `pids` still running (a zombie, state Z, has exited: only its parent's wait
    is missing; one gone between the listing and the read is gone)."""
    alive = set()
    for p in pids:
        try:
            if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(p)
        except (OSError, IndexError):
            pass
    return alive


def _kill(pids: set[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait_for(check, timeout_s: float, proc: subprocess.Popen[bytes], log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {log.read_text()[-2000:]}")


def test_sigterm_to_an_experiment_stops_its_server_and_the_workers(
        tiny_pool_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "experiment.log"
    cmd = [sys.executable, "-m", "gearshift.cli", "experiment", str(tiny_pool_path),
           "--workload", "poisson:40", "--duration", "30", "--out", str(tmp_path / "exp"),
           "--cache", str(tmp_path / "cache"), "--samples", "10", "--sweep-seconds", "5",
           "--rounds", "1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    below: set[int] = set()
    try:
        def server() -> set[int]:
            return {p for p in _descendants(proc.pid) if " serve " in _cmdline(p)}

        started = _wait_for(server, 180.0, proc, log)
        # its workers: the server's own children, once it has loaded some
        _wait_for(lambda: _descendants(next(iter(started))), 120.0, proc, log)
        below = _descendants(proc.pid)
        assert started <= below and len(below) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=150) == 128 + signal.SIGTERM
        assert not _alive(below), [_cmdline(p) for p in _alive(below)]
    finally:  # whatever the test found, it stops (an orphan is no longer below the experiment)
        running = proc.poll() is None  # once it is reaped its pid may be another's
        _kill(_alive(below | (_descendants(proc.pid) if running else set())))
        if running:
            proc.kill()


def test_run_child_stops_its_child_when_the_caller_is_stopped(tmp_path: Path) -> None:
    marker = tmp_path / "child-started"
    child = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(120)"
    caller = ("import sys; from gearshift.stopping import exit_on_sigterm, run_child; "
              f"exit_on_sigterm(); run_child([sys.executable, '-c', {child!r}], 300.0)")
    proc = subprocess.Popen([sys.executable, "-c", caller])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        below = _descendants(proc.pid)
        assert len(below) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert not _alive(below)
    finally:
        if proc.poll() is None:
            proc.kill()
