"""The replica worker process: pin to its cores, load every variant, then serve calls one at a time.

This module is the child side only; `gearshift.engine.workers` starts and talks to it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from multiprocessing.connection import Connection

from gearshift.engine.messages import (
    InferCall,
    InferReply,
    Stop,
    WorkerConfig,
    WorkerReady,
    WorkerStartFailed,
    recv,
    send,
)
from gearshift.engine.shm import SlotReader
from gearshift.errors import GearshiftError
from gearshift.runtime.base import Runtime, load_runtime


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _load(config: WorkerConfig) -> Runtime:
    # Pin before the engine creates its thread pools: the threads inherit this affinity.
    os.sched_setaffinity(0, config.cores)
    import numpy as np

    runtime = load_runtime(config.models, config.settings)
    if config.warmup is not None:
        w = config.warmup
        x = np.zeros((1, *w.shape), dtype=w.dtype)
        for name in runtime.variants():
            runtime.infer(name, {w.name: x})
    return runtime


def _serve_one(runtime: Runtime, call: InferCall, slot: SlotReader | None) -> InferReply:
    t0 = time.perf_counter()
    try:
        inputs = {**call.inputs, **slot.read(call.in_slot)} if call.in_slot and slot else call.inputs
        outputs = runtime.infer(call.variant, inputs)
    except GearshiftError as exc:
        return InferReply(call.request_id, error=exc.message, error_status=exc.status)
    except Exception as exc:  # noqa: BLE001 - a runtime failure must still answer the request
        return InferReply(call.request_id, error=f"runtime error: {exc}", error_status=500)
    return InferReply(call.request_id, outputs, (time.perf_counter() - t0) * 1000.0)


def worker_main(conn: Connection) -> None:
    """Serve over `conn`: the first message is the `WorkerConfig`. Exits on `Stop` or EOF."""
    config = recv(conn)
    assert isinstance(config, WorkerConfig), f"expected WorkerConfig, got {type(config)}"
    t0 = time.perf_counter()
    try:
        runtime = _load(config)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported to the pool
        send(conn, WorkerStartFailed(config.worker_id, f"{type(exc).__name__}: {exc}"))
        return
    slot = SlotReader(config.slot_name, config.slot_size) if config.slot_name else None
    load_ms = (time.perf_counter() - t0) * 1000.0
    send(conn, WorkerReady(config.worker_id, os.getpid(), load_ms, _rss_bytes()))
    while True:
        try:
            msg = recv(conn)
        except (EOFError, OSError):
            return
        if isinstance(msg, Stop):
            return
        if isinstance(msg, InferCall):
            send(conn, _serve_one(runtime, msg, slot))


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group; the front end decides when replicas stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_main(Connection(int(sys.argv[1])))
