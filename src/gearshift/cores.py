"""Which cores each replica of an allocation runs on (shared by the pool and the simulator)."""

from __future__ import annotations

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
