"""The runtime interface: load a pool's variants once, then run any of them on a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class RuntimeSettings:
    """How each session is built. `threads` is the intra-op thread count (never 0: see below).

    ONNX Runtime's default (0) makes one thread per core and pins it, ignoring the process's
    affinity, so replicas sharing a machine would fight; gearshift always sets it.
    `spinning` keeps idle pool threads busy-waiting; it only helps when a replica owns its cores.
    """

    threads: int = 1
    spinning: bool = False
    graph_optimization: bool = True

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


class Runtime(Protocol):
    """A set of loaded variants that can each run a batch."""

    def variants(self) -> list[str]: ...

    def infer(self, variant: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `variant` on `inputs` (batch dim first); returns every output by name."""
        ...
