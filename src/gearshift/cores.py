"""Which cores each replica of an allocation runs on (shared by the pool and the simulator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """Where a replica runs: its thread count and the cores it is pinned to."""

    threads: int
    cores: tuple[int, ...]


def assign_slots(replicas: int, threads: int, cores: list[int]) -> list[Slot]:
    """Replica i gets `threads` consecutive cores from `cores`, wrapping when R*T exceeds them."""
    n = len(cores)
    return [
        Slot(threads, tuple(sorted({cores[(i * threads + j) % n] for j in range(threads)})))
        for i in range(replicas)
    ]


def sharing_cores(slot: Slot, others: Sequence[Slot]) -> list[int]:
    """Indices of the `others` that share a core with `slot`. A new replica on `slot` starts
    serving once every old replica among them has finished what it computes (both at once
    would oversubscribe those cores): the live pool and the simulator both wait so."""
    mine = set(slot.cores)
    return [i for i, o in enumerate(others) if mine & set(o.cores)]
