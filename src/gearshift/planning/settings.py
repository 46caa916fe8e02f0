"""The planning constants, in one place: `PlanSettings` and its defaults (`DEFAULT_PLAN`), read
by `gearshift plan`, the experiment and the benchmarks. No heavy imports, so the CLI can read
the defaults for its options at start-up."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PlanSettings:
    """Every planning constant; `gearshift plan`, the experiment and the benchmarks plan with
    one of these through `plan_table`.

    `duration_s`: simulated seconds per (load, candidate), at most `max_requests` requests at
    the highest load (a pool answering thousands per second gets fewer seconds). `points`:
    loads on the grid (`default_rates`). `warmup_frac`: leading fraction of each run not
    counted. `tie_tol`: effective-accuracy difference treated as a tie. `rel_uncertainty`,
    `period_s`: the robust scores' rate uncertainty (the controller's period: the server's
    default). `max_fallback_share`: `bursts_only`. `headroom`: candidates are judged against
    this fraction of the deadline. `speeds`: how much slower than profiled a host may serve
    (each > 1, ascending) at which the grid is planned again, at the deadline such a host
    leaves (`plan`): the `table` controller scores its candidates at the speed it reads."""

    duration_s: float = 240.0  # 60 left +-0.005 of noise in effective accuracy
    max_requests: int = 100_000
    points: int = 100
    warmup_frac: float = 0.1
    tie_tol: float = 0.002
    rel_uncertainty: float = 0.15  # relative error of the controller's rate estimate
    period_s: float = 0.5  # the controller's period (s): one period's Poisson noise
    max_fallback_share: float = 0.25
    # The experiment's deadline sweep plans a table per deadline: each with at most this many
    # simulated seconds per (load, candidate), fewer than a single plan's `duration_s`.
    sweep_duration_s: float = 120.0
    # Live service times move by 10-30 % between runs on a shared machine, and a table planned
    # on the nose then keeps a variant past its capacity (simulated with service times 1.2x the
    # profile's: -0.11 of effective accuracy against the best static variant over 12 load
    # paths at 300 ms, against +0.04 with 0.85; with the profile exact, 0.85 costs 0.002).
    headroom: float = 0.85
    # A host 1.2 x slower than its profile serves each request 1.2 x longer: read as a 1.2 x
    # heavier load alone, a candidate keeps the slack its profile has against the deadline
    # (simulated at 75 ms: ResNet-50 1x2 chosen at light load, a drop or two a period).
    speeds: tuple[float, ...] = (1.1, 1.2, 1.35, 1.5)

    def __post_init__(self) -> None:
        if not 0 < self.headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {self.headroom}")
        if (not all(math.isfinite(s) and s > 1.0 for s in self.speeds)
                or list(self.speeds) != sorted(set(self.speeds))):
            raise ValueError(f"speeds must be ascending and each > 1, got {self.speeds}")
        if not (self.duration_s > 0 and self.period_s > 0 and self.points >= 1
                and self.max_requests >= 1 and self.sweep_duration_s > 0):
            raise ValueError(f"invalid plan settings {self}")


DEFAULT_PLAN = PlanSettings()
