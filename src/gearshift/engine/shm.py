"""Shared-memory slot for request tensors: one per replica, written by the front end, read in place.

A replica serves one request at a time and the front end writes only to an idle replica's slot,
so a slot never has two users. The front end copies the input tensors into the slot once; the
replica runs ONNX Runtime on numpy views of the slot (no copy). Tensors larger than the slot
travel inline over the replica's socket instead.
"""

from __future__ import annotations

import mmap
import os
import secrets
from dataclasses import dataclass

import numpy as np

_ALIGN = 64


@dataclass(frozen=True)
class ShmTensor:
    """Where one input tensor lies in the slot."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int


def _path(name: str) -> str:
    return f"/dev/shm/{name}"


class SlotWriter:
    """The front end's side: owns (creates and unlinks) the shared memory.

    Made directly in /dev/shm rather than with `multiprocessing.shared_memory`, which would start
    a resource-tracker process that outlives the server as an unreaped child.
    """

    def __init__(self, size: int) -> None:
        self.size = max(size, _ALIGN)
        self.name = f"gearshift-{os.getpid()}-{secrets.token_hex(6)}"
        fd = os.open(_path(self.name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.size)
            self._map = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)
        self._buf: np.ndarray | None = np.frombuffer(self._map, dtype=np.uint8)

    def write(self, inputs: dict[str, np.ndarray]) -> tuple[ShmTensor, ...] | None:
        """Copy `inputs` into the slot; None if they do not fit (send them inline then)."""
        placed, offset = [], 0
        for name, x in inputs.items():
            offset = -(-offset // _ALIGN) * _ALIGN
            if offset + x.nbytes > self.size:
                return None
            placed.append((name, x, offset))
            offset += x.nbytes
        refs = []
        assert self._buf is not None, "slot used after close"
        for name, x, off in placed:
            view = self._buf[off:off + x.nbytes].view(x.dtype).reshape(x.shape)
            np.copyto(view, x)
            refs.append(ShmTensor(name, x.dtype.str, tuple(x.shape), off))
        return tuple(refs)

    def unlink(self) -> None:
        """Remove the name from /dev/shm (the mappings stay valid): call once the replica has
        mapped the slot, so that nothing is left behind however the processes end."""
        try:
            os.unlink(_path(self.name))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unmap and unlink the slot; safe to call more than once."""
        if self._buf is None:
            return
        self._buf = None
        self._map.close()
        self.unlink()


class SlotReader:
    """The replica's side: maps the slot by name (no resource tracking: the front end owns it)."""

    def __init__(self, name: str, size: int) -> None:
        fd = os.open(_path(name), os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def read(self, refs: tuple[ShmTensor, ...]) -> dict[str, np.ndarray]:
        """Views over the slot, valid until the next request is written."""
        return {
            r.name: np.ndarray(r.shape, dtype=np.dtype(r.dtype), buffer=self._map, offset=r.offset)
            for r in refs
        }
