"""One look for every figure: a colour per variant (ordered by accuracy) and per policy.

Variants run from light (least accurate) to dark (most accurate) on viridis; a static policy
wears its variant's colour, dashed. Switching policies are solid (table black, queue-aware
crimson), the oracle grey and dotted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from matplotlib import colormaps
from matplotlib.colors import to_hex

from gearshift.control.factory import SWITCHING
from gearshift.policy import ORACLE, PAPER, static_variant

SWITCHING_COLORS = dict(zip(SWITCHING, ("#000000", "#d62728", "#2ca02c", "#9467bd"),
                            strict=False))
ORACLE_COLOR = "#7f7f7f"
OTHER_COLORS = ("#1f77b4", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
UNKNOWN_VARIANT_COLOR = "#bbbbbb"


@dataclass(frozen=True)
class LineStyle:
    color: str
    linestyle: str
    linewidth: float
    label: str


def variant_order(accuracy: Mapping[str, float], extra: Iterable[str] = ()) -> list[str]:
    """Variants by accuracy, least accurate first; names without a declared accuracy last."""
    known = sorted(accuracy, key=lambda v: (accuracy[v], v))
    return known + sorted(set(extra) - set(accuracy) - {""})


def variant_colors(accuracy: Mapping[str, float], extra: Iterable[str] = ()) -> dict[str, str]:
    """A colour per variant: viridis from light (least accurate) to dark (most accurate)."""
    known = sorted(accuracy, key=lambda v: (accuracy[v], v))
    cmap = colormaps["viridis"]
    n = len(known)
    colors = {v: to_hex(cmap(0.85 - 0.8 * i / max(1, n - 1))) for i, v in enumerate(known)}
    colors.update({v: UNKNOWN_VARIANT_COLOR for v in set(extra) - set(accuracy)})
    return colors


def policy_label(name: str) -> str:
    if name in SWITCHING_COLORS:
        return f"{name} (switching)"
    if name == ORACLE:
        return "oracle (simulated upper bound)"
    if name == PAPER:
        return "table without fallbacks (the paper's; simulated)"
    return name


def policy_styles(names: Iterable[str], accuracy: Mapping[str, float]) -> dict[str, LineStyle]:
    """Line style per policy name (`table`, `queue-aware`, `static:<variant>`, `oracle`, other)."""
    names = list(names)
    vcolors = variant_colors(accuracy, [static_variant(n) or "" for n in names])
    styles, others = {}, 0
    for n in names:
        v = static_variant(n)
        if n in SWITCHING_COLORS:
            styles[n] = LineStyle(SWITCHING_COLORS[n], "-", 2.4, policy_label(n))
        elif v is not None:
            styles[n] = LineStyle(vcolors.get(v, UNKNOWN_VARIANT_COLOR), "--", 1.7, n)
        elif n == ORACLE:
            styles[n] = LineStyle(ORACLE_COLOR, ":", 2.2, policy_label(n))
        else:
            styles[n] = LineStyle(OTHER_COLORS[others % len(OTHER_COLORS)], "-", 1.7, n)
            others += 1
    return styles


def static_first_by_accuracy(names: Iterable[str], accuracy: Mapping[str, float]) -> list[str]:
    """Policy names for legends: switching, static by accuracy (most accurate first), oracle."""
    names = list(names)
    order = variant_order(accuracy, [static_variant(n) or "" for n in names])

    def key(n: str) -> tuple[int, int]:
        v = static_variant(n)
        if n in SWITCHING_COLORS:
            return (0, list(SWITCHING_COLORS).index(n))
        if v is not None:
            return (1, -order.index(v) if v in order else 0)
        return (2, 0) if n == ORACLE else (3, names.index(n))

    return sorted(names, key=key)
