"""The paper's figures from plain data (matplotlib, Agg backend, PNG). Each returns its path.

1. `plot_switching_trace`: offered load over time, and below it the variant (and R x T) each
   switching policy chose over time (the paper's Figure "model selected over time").
2. `plot_accuracy_vs_deadline`: effective accuracy vs deadline, a line per policy (Pareto).
3. `plot_latency_cdf`: latency CDF per policy over ALL requests (a dropped or failed request
   never arrives, so a curve levels off at the answered fraction), the deadline marked.
4. `plot_sim_vs_measured`: on-time fraction and p99 per policy, simulated vs measured, with the
   tolerance the simulator must meet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from gearshift.reports.compare import ON_TIME_TOL, P99_REL_TOL, SimCheck
from gearshift.reports.control_log import Segment
from gearshift.reports.frame import RecordFrame
from gearshift.reports.style import (
    policy_styles,
    static_first_by_accuracy,
    variant_colors,
    variant_order,
)
from gearshift.reports.summary import SweepResult, on_time_mask

DPI = 130
Series = tuple[np.ndarray, np.ndarray]  # (time s, rate requests/s), steps starting at each time
_ALLOC_SHADES = ("#d9d9d9", "#a6a6a6")
_OK_COLOR, _FAIL_COLOR = "#2ca02c", "#d62728"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
    return path


# --- 1. model switching over time ---------------------------------------------------------------


def plot_switching_trace(load: Series, segments: Mapping[str, Sequence[Segment]],
                         accuracy: Mapping[str, float], path: str | Path,
                         target: Series | None = None, title: str = "") -> Path:
    """Top: offered load (requests/s per bin, `load` = (bin start s, rate); `target` = the
    workload's intended rate, dashed). Below, one panel per policy in `segments`: a row per
    variant (most accurate on top) with a bar where it was chosen, and an R x T band when the
    segments know the allocation."""
    names = list(segments)
    used = {s.variant for segs in segments.values() for s in segs}
    order = variant_order(accuracy, used)
    rows = [1.0 + 0.35 * len(order) for _ in names]
    fig, axes = plt.subplots(1 + len(names), 1, sharex=True, squeeze=False,
                             figsize=(10, 2.6 + sum(rows)),
                             gridspec_kw={"height_ratios": [2.2, *rows]})
    axes = axes[:, 0]
    _draw_load(axes[0], load, target)
    colors = variant_colors(accuracy, used)
    for ax, name in zip(axes[1:], names):
        _draw_choices(ax, list(segments[name]), order, accuracy, colors)
        ax.set_title(f"{name}: variant chosen over time", fontsize=10, loc="left")
    axes[-1].set_xlabel("time since start of run (s)")
    fig.suptitle(title or "Model switching under a fluctuating load", fontsize=13)
    fig.tight_layout()
    return _save(fig, path)


def _draw_load(ax: Axes, load: Series, target: Series | None) -> None:
    t, rate = load
    end = t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0) if len(t) else 1.0
    ax.fill_between(np.append(t, end), np.append(rate, rate[-1:] if len(rate) else 0),
                    step="post", color="#9ecae1", alpha=0.8, label="offered (sent per second)")
    ax.step(np.append(t, end), np.append(rate, rate[-1:] if len(rate) else 0), where="post",
            color="#3182bd", linewidth=1.0)
    if target is not None:
        ax.step(target[0], target[1], where="post", color="#08306b", linestyle="--",
                linewidth=1.3, label="workload rate")
    ax.set_ylabel("load (requests/s)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, end)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("offered load", fontsize=10, loc="left")


def _draw_choices(ax: Axes, segs: list[Segment], order: list[str],
                  accuracy: Mapping[str, float], colors: Mapping[str, str]) -> None:
    with_alloc = any(s.replicas is not None for s in segs)
    base = 1 if with_alloc else 0
    ypos = {v: base + i for i, v in enumerate(order)}
    for s in segs:
        ax.broken_barh([(s.start_s, s.end_s - s.start_s)], (ypos[s.variant] - 0.4, 0.8),
                       facecolors=colors[s.variant], edgecolor="none")
    labels = [f"{v} ({accuracy[v]:.1%})" if v in accuracy else v for v in order]
    if with_alloc:
        _draw_allocations(ax, segs)
        labels = ["R x T", *labels]
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", alpha=0.3)


def _draw_allocations(ax: Axes, segs: list[Segment]) -> None:
    """A band at y = 0: one grey block per run of the same R x T, labelled if wide enough."""
    runs: list[list[float | str]] = []
    for s in segs:
        if runs and runs[-1][2] == s.allocation and abs(float(runs[-1][1]) - s.start_s) < 1e-9:
            runs[-1][1] = s.end_s
        else:
            runs.append([s.start_s, s.end_s, s.allocation])
    span = max(float(r[1]) for r in runs) - min(float(r[0]) for r in runs)
    for i, (start, end, alloc) in enumerate(runs):
        start, end = float(start), float(end)
        ax.broken_barh([(start, end - start)], (-0.4, 0.8),
                       facecolors=_ALLOC_SHADES[i % 2], edgecolor="white", linewidth=0.5)
        if end - start >= 0.035 * span:
            ax.text((start + end) / 2, 0, str(alloc), ha="center", va="center", fontsize=7)


# --- 2. effective accuracy vs deadline ----------------------------------------------------------


def plot_accuracy_vs_deadline(sweep: SweepResult, accuracy: Mapping[str, float],
                              path: str | Path, deadline_ms: float | None = None) -> Path:
    """`sweep`: each policy's effective accuracy per deadline (the summary's `deadlines`
    entry). Switching policies solid, static dashed, oracle dotted; the run's deadline marked.
    Log x axis when the deadlines span more than 10x."""
    xs = np.asarray(sweep.deadline_ms, dtype=float)
    curves = sweep.policies
    styles = policy_styles(curves, accuracy)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for name in static_first_by_accuracy(curves, accuracy):
        st = styles[name]
        ys = np.array([np.nan if y is None else y for y in curves[name]], dtype=float)
        ax.plot(xs, ys, color=st.color, linestyle=st.linestyle, linewidth=st.linewidth,
                marker="o", markersize=3, label=st.label)
    if deadline_ms is not None:
        ax.axvline(deadline_ms, color="0.4", linewidth=1, linestyle="-.",
                   label=f"run deadline {deadline_ms:g} ms")
    if len(xs) and xs.min() > 0 and xs.max() / xs.min() > 10:
        _log_x(ax, xs)
    ax.set_xlabel("deadline D (ms)")
    ax.set_ylabel("effective accuracy (on time x accuracy)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    how = ("each policy simulated at each deadline" if sweep.source == "simulated"
           else "measured runs re-scored at each deadline")
    ax.set_title(f"Effective accuracy vs deadline ({how})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _log_x(ax: Axes, xs: np.ndarray) -> None:
    """Log x axis with plain-number ticks (1-2-5 steps) rather than powers of ten."""
    ax.set_xscale("log")
    lo, hi = float(np.min(xs)), float(np.max(xs))
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))), int(np.log10(hi)) + 2)
             for m in (1, 2, 5)]
    ax.set_xticks([t for t in ticks if lo / 1.5 <= t <= hi * 1.5])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


# --- 3. latency CDF -----------------------------------------------------------------------------


def plot_latency_cdf(frames: Mapping[str, RecordFrame], deadline_ms: float,
                     accuracy: Mapping[str, float], path: str | Path) -> Path:
    """Fraction of ALL requests answered within x ms, a curve per policy; the deadline as a
    vertical line; log x axis when answered latencies span more than 20x."""
    styles = policy_styles(frames, accuracy)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    lo, hi = np.inf, 0.0
    for name in static_first_by_accuracy(frames, accuracy):
        f, st = frames[name], styles[name]
        lat = np.sort(f.latency_ms[f.answered])
        if len(f) == 0 or len(lat) == 0:
            continue
        lo, hi = min(lo, float(lat[0])), max(hi, float(lat[-1]))
        y = np.arange(0, len(lat) + 1) / len(f)  # from 0 at the fastest answer
        share = float(np.mean(on_time_mask(f, deadline_ms)))
        ax.step(np.concatenate([lat[:1], lat]), y, where="post", color=st.color, linestyle=st.linestyle,
                linewidth=st.linewidth, label=f"{st.label}: {share:.1%} within D")
    ax.axvline(deadline_ms, color="0.2", linewidth=1.2, linestyle="-.",
               label=f"deadline D = {deadline_ms:g} ms")
    if hi > 0 and lo > 0 and hi / lo > 20:
        _log_x(ax, np.array([lo, hi]))
    ax.set_xlabel("latency at the client (ms)")
    ax.set_ylabel("fraction of all requests answered within x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("Latency CDF (dropped and failed requests never arrive: curves stop below 1)",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# --- 4. simulated vs measured -------------------------------------------------------------------


def plot_sim_vs_measured(checks: Sequence[SimCheck], accuracy: Mapping[str, float],
                         path: str | Path) -> Path:
    """Two panels of grouped bars per policy: on-time fraction and p99 (ms), simulated (hatched)
    next to measured (solid). The whisker on a measured bar is the band the simulated value must
    fall in (on time +-0.03; p99 +-15% of measured); ok / off above each group. A black
    diamond on a simulated bar: the run replayed with its own service times, where there is
    one."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    names = [c.policy for c in checks]
    styles = policy_styles(names, accuracy)
    colors = [styles[n].color for n in names]
    sim_ot = [c.on_time_simulated for c in checks]
    meas_ot = [c.on_time_measured for c in checks]
    replays = [c.replayed for c in checks]
    _grouped(left, names, colors, sim_ot, meas_ot, [ON_TIME_TOL] * len(checks),
             [c.on_time_ok for c in checks],
             [r.on_time if r is not None else math.nan for r in replays])
    left.set_ylabel("fraction of requests on time")
    left.set_ylim(0, 1.15)
    left.set_title(f"On time (target: within {ON_TIME_TOL:g})", fontsize=11)
    meas_p99 = [c.p99_measured_ms for c in checks]
    _grouped(right, names, colors, [c.p99_simulated_ms for c in checks], meas_p99,
             [P99_REL_TOL * m for m in meas_p99], [c.p99_ok for c in checks],
             [r.p99_ms if r is not None else math.nan for r in replays])
    right.set_ylabel("p99 latency of answered requests (ms)")
    right.set_ylim(0, 1.25 * np.nanmax([1.0, *meas_p99, *[c.p99_simulated_ms for c in checks],
                                        *[r.p99_ms for r in replays if r is not None]]))
    right.set_title(f"p99 latency (target: within {P99_REL_TOL:.0%} of measured)", fontsize=11)
    handles: list[Artist] = [
        Patch(facecolor="0.75", hatch="///", edgecolor="0.3", label="simulated"),
        Patch(facecolor="0.45", edgecolor="0.3", label="measured (whisker = tolerance)")]
    if any(r is not None for r in replays):
        handles.append(Line2D([], [], color="black", marker="D", linestyle="none",
                              label="replayed with the run's own service times"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9)
    fig.suptitle("Simulator vs live server, per policy", fontsize=13)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _grouped(ax: Axes, names: list[str], colors: list[str], sim: list[float], meas: list[float],
             tol: list[float], ok: list[bool], replayed: list[float]) -> None:
    x = np.arange(len(names))
    w = 0.38
    ax.bar(x - w / 2, sim, w, color=colors, alpha=0.35, hatch="///", edgecolor=colors)
    ax.plot(x - w / 2, replayed, "D", color="black", markersize=6, linestyle="none")
    ax.bar(x + w / 2, meas, w, color=colors, edgecolor=colors, yerr=tol, capsize=5,
           error_kw={"ecolor": "0.25", "elinewidth": 1.2})
    top = [np.nanmax([s, m + t, r]) for s, m, t, r in zip(sim, meas, tol, replayed)]
    for xi, yi, good in zip(x, top, ok):
        ax.annotate("ok" if good else "off", (xi, yi), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=9, fontweight="bold",
                    color=_OK_COLOR if good else _FAIL_COLOR)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
