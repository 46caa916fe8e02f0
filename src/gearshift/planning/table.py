"""The policy table file: load ranges -> (variant, R, T), plus the whole grid it was chosen from.

Written by `gearshift plan`, read by the `table` and `queue-aware` policies.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gearshift.errors import SpecError
from gearshift.files import read_json_model
from gearshift.types import Allocation, Decision


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


class GridPoint(_Model):
    """One (load, variant, R, T) candidate as evaluated by the planner."""

    rate_rps: float
    variant: str
    replicas: int
    threads: int
    p_on_time: float = Field(ge=0, le=1)
    effective_accuracy: float = Field(ge=0, le=1)
    p50_ms: float
    p99_ms: float
    fallback_share: float = Field(default=0.0, ge=0, le=1,
                                  description="answered requests served by a fallback")


class SpeedGrid(_Model):
    """The grid planned again for a host `speed` x slower than the profile: every candidate
    judged against the deadline such a host leaves (headroom x deadline / speed) at each load
    (its rate in the profile's time, as the `table` controller reads a slower host's load:
    speed x its rate)."""

    speed: float = Field(gt=1)
    grid: list[GridPoint]


class PolicyRange(_Model):
    """Loads in [min_rps, max_rps) are best served by this choice (max_rps = inf for the last)."""

    min_rps: float
    max_rps: float
    variant: str
    replicas: int
    threads: int
    p_on_time: float
    effective_accuracy: float

    @property
    def decision(self) -> Decision:
        return Decision(self.variant, Allocation(self.replicas, self.threads), "table")


class PolicyTable(_Model):
    application: str
    pool_digest: str
    deadline_ms: float = Field(gt=0)
    cores: int
    ranges: list[PolicyRange] = Field(min_length=1)
    grid: list[GridPoint] = Field(default_factory=list)
    speed_grids: list[SpeedGrid] = Field(
        default_factory=list, description="the grid again for hosts slower than the profile, "
                                          "by speed ascending (empty: none planned)")
    headroom: float = Field(default=1.0, gt=0, le=1,
                            description="the grid was judged against headroom x deadline_ms")
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="variant -> lighter variants the plan assumed answer "
                                          "its late requests (empty: none)")
    max_fallback_share: float = Field(
        default=0.25, ge=0, le=1, description="no choice was made at a load where its fallbacks "
                                              "answer more than this share of its requests")

    def lookup(self, rate_rps: float) -> int:
        """Index of the range holding `rate_rps` (below the first: 0; above the last: last)."""
        for i, r in enumerate(self.ranges):
            if rate_rps < r.max_rps:
                return i
        return len(self.ranges) - 1


def save_policy(table: PolicyTable, path: str | Path) -> None:
    Path(path).write_text(table.model_dump_json(indent=1))


def load_policy(path: str | Path, pool_digest: str | None = None) -> PolicyTable:
    table = read_json_model(path, PolicyTable, "policy table", "gearshift plan")
    if pool_digest is not None and table.pool_digest != pool_digest:
        raise SpecError(
            f"policy {path} was planned for a different pool (digest {table.pool_digest}, this "
            f"pool is {pool_digest}); run `gearshift profile` and `gearshift plan` again"
        )
    return table
