"""The paper's characterisation figures, from a policy table's grid (matplotlib, Agg backend).

1. Effective accuracy vs load: one curve per variant at its best allocation for each load, and
   the policy's envelope (the table's choice at each load) drawn underneath, thick.
2. p99 latency vs load: one curve per R x T for one variant, the deadline marked. Latency is of
   answered requests; a request dropped at dispatch is not in it, so above capacity the curves
   level off near deadline + service time while the fraction on time collapses.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from gearshift.planning.table import GridPoint, PolicyTable
from gearshift.profiling.profile import Profile

Draw = Callable[[Axes, PolicyTable, Profile], None]
FIGSIZE = (8.0, 5.0)
DPI = 130


def plot_characterisation(
    table: PolicyTable, profile: Profile, out_dir: str | Path, variant: str | None = None
) -> list[Path]:
    """Write `effective_accuracy_vs_load.png` and `p99_vs_load_<variant>.png` into `out_dir`;
    `variant` for the second defaults to the one the table chooses at the most grid loads.
    Returns the paths."""
    if not table.grid:
        raise ValueError("the policy table has no grid to plot; plan it with gearshift plan")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variant = variant or most_chosen(table)
    return [
        _save(plot_effective_accuracy, table, profile, out / "effective_accuracy_vs_load.png"),
        _save(lambda ax, t, p: plot_p99(ax, t, p, variant), table, profile,
              out / f"p99_vs_load_{variant}.png"),
    ]


def _save(draw: Draw, table: PolicyTable, profile: Profile, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    try:
        draw(ax, table, profile)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def best_per_variant(grid: list[GridPoint]) -> dict[str, list[GridPoint]]:
    """For each variant, per load, the allocation with the highest effective accuracy."""
    best: dict[tuple[str, float], GridPoint] = {}
    for p in grid:
        key = (p.variant, p.rate_rps)
        if key not in best or p.effective_accuracy > best[key].effective_accuracy:
            best[key] = p
    curves: dict[str, list[GridPoint]] = defaultdict(list)
    for (v, _), p in sorted(best.items(), key=lambda kv: kv[0][1]):
        curves[v].append(p)
    return dict(curves)


def envelope(table: PolicyTable) -> list[GridPoint]:
    """The table's choice at each grid load, in load order."""
    chosen = []
    for rate in sorted({p.rate_rps for p in table.grid}):
        r = table.ranges[table.lookup(rate)]
        chosen += [p for p in table.grid if p.rate_rps == rate and p.variant == r.variant
                   and p.replicas == r.replicas and p.threads == r.threads]
    return chosen


def most_chosen(table: PolicyTable) -> str:
    """The variant the table picks at the most grid loads."""
    counts: dict[str, int] = defaultdict(int)
    for p in envelope(table):
        counts[p.variant] += 1
    return max(counts, key=lambda v: counts[v])


def plot_effective_accuracy(ax: Axes, table: PolicyTable, profile: Profile) -> None:
    env = envelope(table)
    ax.plot([p.rate_rps for p in env], [p.effective_accuracy for p in env], color="0.8",
            linewidth=7, solid_capstyle="round", label="policy (table choice)", zorder=1)
    order = sorted(profile.accuracy, key=lambda v: profile.accuracy[v])
    curves = best_per_variant(table.grid)
    for v in order:
        pts = curves.get(v, [])
        ax.plot([p.rate_rps for p in pts], [p.effective_accuracy for p in pts], linewidth=1.6,
                label=f"{v} (acc. {profile.accuracy[v]:.3f}, best R x T)", zorder=2)
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("effective accuracy = P(latency <= D) x accuracy")
    ax.set_title(f"Effective accuracy vs load, deadline D = {table.deadline_ms:g} ms "
                 f"({table.cores} cores)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_p99(ax: Axes, table: PolicyTable, profile: Profile, variant: str) -> None:
    """x runs to 1.5 x the variant's largest measured capacity (or the grid's end)."""
    by_alloc: dict[tuple[int, int], list[GridPoint]] = defaultdict(list)
    for p in sorted(table.grid, key=lambda p: p.rate_rps):
        if p.variant == variant:
            by_alloc[(p.replicas, p.threads)].append(p)
    if not by_alloc:
        raise ValueError(f"the policy table's grid has no points for variant {variant!r}")
    for (r, t), pts in sorted(by_alloc.items(), reverse=True):
        ax.plot([p.rate_rps for p in pts], [p.p99_ms for p in pts], marker=".", markersize=3,
                linewidth=1.4, label=f"R{r} x T{t}")
    ax.axhline(table.deadline_ms, color="red", linestyle="--", linewidth=1.2,
               label=f"deadline {table.deadline_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("p99 latency of answered requests (ms, log scale)")
    ax.set_title(f"{variant}: p99 latency vs load per replicas x threads")
    capacity = max(e.throughput_rps for e in profile.entries if e.variant == variant)
    ax.set_xlim(0, min(1.5 * capacity, max(p.rate_rps for p in table.grid)))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
