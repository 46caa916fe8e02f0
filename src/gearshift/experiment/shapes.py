"""Load-path shapes for judging switching beyond one path: each a family of workload specs, one per
seed, with rates as multiples of capacity (`0.5x`), so that a shape means the same load on any
pool and the same spec runs in the simulator and through `gearshift experiment`.

- `mmpp-5`, `mmpp-20`: the default Markov-modulated load, 5 s and 20 s per level (the seed
  draws the level path);
- `steps`: four levels drawn from the Markov levels, 10 s each;
- `flash`: a flash crowd, a quiet base and a spike to 0.7-1.4 x capacity at a drawn time;
- `trace`: a window of the Twitter per-second trace, ten minutes of it per second replayed
  (its daily ramps in a short run), scaled to a drawn mean; only where the trace file is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from gearshift.loadgen.arrivals import DEFAULT_LOAD_FRACTIONS

TRACE_SPEED = 600  # trace seconds per replayed second
TRACE_LINES = 1_899_061  # lines of twitter_per_second.txt.bz2


def _mmpp(dwell_s: float) -> Callable[[np.random.Generator], str]:
    return lambda rng: f"mmpp:dwell={dwell_s:g}"


def _steps(rng: np.random.Generator) -> str:
    levels = rng.choice(DEFAULT_LOAD_FRACTIONS, size=4, replace=True)
    return "step:" + ",".join(f"{x:g}x" for x in levels) + "@10"


def _flash(rng: np.random.Generator) -> str:
    base, peak = rng.uniform(0.08, 0.3), rng.uniform(0.7, 1.4)
    at, length = rng.uniform(5.0, 20.0), rng.uniform(4.0, 12.0)
    return f"spike:{base:.3f}x,{peak:.3f}x,{at:.1f},{length:.1f}"


def _trace(path: Path, duration_s: float) -> Callable[[np.random.Generator], str]:
    def spec(rng: np.random.Generator) -> str:
        last = TRACE_LINES - int(np.ceil(duration_s)) * TRACE_SPEED
        start = int(rng.integers(0, last))
        mean = rng.uniform(0.2, 0.6)
        return f"trace:{path},mean={mean:.3f}x,start={start},speed={TRACE_SPEED}"
    return spec


def shapes(trace_dir: Path | None, duration_s: float) -> dict[str, Callable[[int], str]]:
    """Shape name -> (seed -> workload spec). `trace` only if `trace_dir` holds the trace."""
    makers: dict[str, Callable[[np.random.Generator], str]] = {
        "mmpp-5": _mmpp(5.0), "mmpp-20": _mmpp(20.0), "steps": _steps, "flash": _flash,
    }
    twitter = trace_dir / "twitter_per_second.txt.bz2" if trace_dir is not None else None
    if twitter is not None and twitter.is_file():
        makers["trace"] = _trace(twitter, duration_s)
    return {name: _seeded(make) for name, make in makers.items()}


def _seeded(make: Callable[[np.random.Generator], str]) -> Callable[[int], str]:
    return lambda seed: make(np.random.default_rng([seed, 0x5EED]))
