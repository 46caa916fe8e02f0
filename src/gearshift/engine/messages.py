"""Typed messages between the front end and replica worker processes, and their wire framing.

A message travels over a `multiprocessing` pipe as one header frame (the pickled dataclass, with
numpy arrays taken out of band by pickle protocol 5) followed by one raw frame per array buffer.
Arrays are thus written from their own memory and rebuilt on the other side over the received
bytes, with no extra pickling copy.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np

from gearshift.engine.shm import ShmTensor
from gearshift.runtime.base import ModelFile, RuntimeSettings

_COUNT = struct.Struct("<I")


@dataclass(frozen=True)
class InputShape:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to start: its cores, its models (name -> file, engine and
    precision), settings."""

    worker_id: int
    cores: tuple[int, ...]
    models: dict[str, ModelFile]
    settings: RuntimeSettings
    warmup: InputShape | None = None
    slot_name: str | None = None  # shared memory for input tensors (see `shm`)
    slot_size: int = 0


@dataclass(frozen=True)
class InferCall:
    """Inputs travel in the replica's shared-memory slot (`in_slot`) or inline (`inputs`)."""

    request_id: int
    variant: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    in_slot: tuple[ShmTensor, ...] = ()


@dataclass(frozen=True)
class InferReply:
    """`error` is empty on success; otherwise `error_status` is the HTTP status it maps to."""

    request_id: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    service_ms: float = 0.0
    error: str = ""
    error_status: int = 0


@dataclass(frozen=True)
class WorkerReady:
    worker_id: int
    pid: int
    load_ms: float
    rss_bytes: int


@dataclass(frozen=True)
class WorkerStartFailed:
    worker_id: int
    error: str


@dataclass(frozen=True)
class Stop:
    """Finish nothing more; exit. Sent only to an idle worker."""


Message = WorkerConfig | InferCall | InferReply | WorkerReady | WorkerStartFailed | Stop
_MESSAGE_TYPES = (WorkerConfig, InferCall, InferReply, WorkerReady, WorkerStartFailed, Stop)


def send(conn: Connection, msg: Message) -> None:
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(msg, protocol=5, buffer_callback=buffers.append)
    conn.send_bytes(_COUNT.pack(len(buffers)) + header)
    for buf in buffers:
        conn.send_bytes(buf.raw())


def recv(conn: Connection) -> Message:
    """Blocking read of one message; raises EOFError when the other end has gone."""
    first = conn.recv_bytes()
    (count,) = _COUNT.unpack_from(first)
    buffers = [conn.recv_bytes() for _ in range(count)]  # arrays are rebuilt read-only over these
    msg = pickle.loads(memoryview(first)[_COUNT.size :], buffers=buffers)
    if not isinstance(msg, _MESSAGE_TYPES):
        # the peer is broken: the reader's end-of-stream, not a type error of the caller's
        raise EOFError(f"not a gearshift message: {type(msg).__name__}")  # noqa: TRY004
    return msg
