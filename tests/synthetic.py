"""Synthetic profiles with known service-time distributions, for simulator, planner and policy tests."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gearshift.profiling.profile import MachineInfo, Profile
from gearshift.types import Allocation

MACHINE = MachineInfo(cpu_model="synthetic", cores=4, platform="test", python="3", onnxruntime="0")


def exponential_ms(mean_ms: float, n: int = 20_000, seed: int = 1) -> list[float]:
    """Service samples whose empirical distribution is close to Exp(mean): evenly spaced
    quantiles (no sampling noise in the mean) shuffled by a seeded generator."""
    q = (np.arange(n) + 0.5) / n
    samples = -mean_ms * np.log1p(-q)
    return list(np.random.default_rng(seed).permutation(samples))


def constant_ms(value_ms: float, n: int = 20_000) -> list[float]:
    return [value_ms] * n


def make_profile(
    entries: Mapping[tuple[str, Allocation], list[float]],
    accuracy: Mapping[str, float],
    overhead_ms: list[float] | None = None,
    cores: int = 4,
) -> Profile:
    """A Profile with the given service samples (ms) per (variant, allocation); throughput is
    R / mean service."""
    return Profile(
        application="synthetic",
        pool_digest="synthetic",
        cores=cores,
        machine=MACHINE,
        created="2026-01-01T00:00:00",
        overhead_ms=overhead_ms or [0.0],
        accuracy=dict(accuracy),
        entries=[
            {
                "variant": v,
                "replicas": a.replicas,
                "threads": a.threads,
                "service_ms": samples,
                "throughput_rps": a.replicas * 1000.0 / float(np.mean(samples)),
            }
            for (v, a), samples in entries.items()
        ],
    )
