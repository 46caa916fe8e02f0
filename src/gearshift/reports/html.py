"""One self-contained HTML report: inline CSS, PNG figures as base64 data URIs, no external asset.

Reads the summary.json document (`summary.build_summary`), the figure files, and a `context`
mapping describing the run (pool, workload, duration_s, deadline_ms, machine, ...; `title` and
`captions` {file name: caption} are optional). Writes `<out_dir>/report.html`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path

from gearshift.policy import ORACLE
from gearshift.reports.compare import ON_TIME_TOL, P99_REL_TOL, SimCheck, compare_json
from gearshift.reports.summary import PolicyJSON, SummaryDoc
from gearshift.types import JSON, JSONObject

BASIS_SENTENCES = {
    "declared": "Accuracy basis: declared — effective accuracy is on-time x the variant's "
                "published accuracy, averaged over all requests (a late, dropped or failed "
                "request counts zero).",
    "labels": "Accuracy basis: labels — effective accuracy is the fraction of all requests "
              "answered on time and correct.",
}
CAPTIONS = {
    "switching_trace": "Model switching over time: offered load (top) and the variant, with its "
                       "replicas x threads, each switching policy chose every period.",
    "accuracy_vs_deadline": "Effective accuracy vs deadline: switching policies (solid) against "
                            "every static variant (dashed); the oracle (dotted) is an upper "
                            "bound computed in the simulator.",
    "latency_cdf": "Latency CDF over all requests at the client; the vertical line is the "
                   "deadline, and a curve's height there is its on-time fraction.",
    "sim_vs_measured": "Simulator vs live server: on-time fraction and p99 latency per policy; "
                       "the whiskers are the tolerance the simulated value must fall within.",
}
CONTEXT_ORDER = ("pool", "workload", "duration_s", "deadline_ms", "period_s", "machine", "cores",
                 "seed", "date")
_CONTEXT_LABELS = {"duration_s": "duration (s)", "deadline_ms": "deadline (ms)",
                   "period_s": "switching period (s)"}
Cell = float | int | None  # a summary table cell: a PolicyJSON value
# column key, header, formatter, best ("max", "min" or None)
Column = tuple[str, str, Callable[[Cell], str], str | None]
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0}th,td{padding:.35em .8em;border-bottom:1px solid #e4e4e4}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.best{background:#e3f4e1;font-weight:600}tr.bound td{color:#666;font-style:italic}
.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:600}
.basis{background:#f7f7fb;border-left:4px solid #5b6abf;padding:.5em .8em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#444;font-size:.93em;margin-top:.3em}dl.ctx{display:grid;
grid-template-columns:max-content auto;gap:.2em 1.2em}dl.ctx dt{font-weight:600}dl.ctx dd{margin:0}
.note{color:#555;font-size:.92em}
"""


def write_report(out_dir: str | Path, summary: SummaryDoc, figures: Sequence[Path],
                 context: JSONObject) -> Path:
    """Write `<out_dir>/report.html` and return its path. Raises FileNotFoundError for a missing
    figure and ValueError for a figure that is not a PNG."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = str(context.get("title", "gearshift: model switching run report"))
    body = [
        f"<h1>{escape(title)}</h1>",
        "<h2>What was run</h2>", _context_html(context, summary),
        "<h2>Summary</h2>", _basis_html(summary), _summary_table(summary),
        _rounds_html(summary),
        "<h2>Figures</h2>", *[_figure_html(Path(p), context) for p in figures],
        "<h2>Simulated vs measured</h2>", _sim_table(compare_json(summary)),
        _notes_html(summary["notes"]),
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _context_html(context: JSONObject, summary: SummaryDoc) -> str:
    items: dict[str, JSON] = {k: v for k, v in context.items() if k not in ("title", "captions")}
    items.setdefault("deadline_ms", summary["deadline_ms"])
    keys = [k for k in CONTEXT_ORDER if k in items] + [k for k in items if k not in CONTEXT_ORDER]
    rows = [f"<dt>{escape(_CONTEXT_LABELS.get(k, k.replace('_', ' ')))}</dt>"
            f"<dd>{escape(_plain(items[k]))}</dd>" for k in keys]
    return '<dl class="ctx">' + "".join(rows) + "</dl>"


def _plain(value: JSON) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _basis_html(summary: SummaryDoc) -> str:
    basis = summary["accuracy_basis"]
    sentence = BASIS_SENTENCES.get(basis, f"Accuracy basis: {basis}.")
    return (f'<p class="basis">{escape(sentence)} On time means answered (HTTP 200) within '
            f'{_plain(summary["deadline_ms"])} ms at the client.</p>')


def _num(digits: int, pct: bool = False) -> Callable[[Cell], str]:
    def fmt(v: Cell) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{100 * v:.{digits}f}%" if pct else f"{v:,.{digits}f}"
    return fmt


COLUMNS: tuple[Column, ...] = (
    ("effective_accuracy", "effective accuracy", _num(4), "max"),
    ("on_time", "on time", _num(1, pct=True), "max"),
    ("p50_ms", "p50 (ms)", _num(1), "min"),
    ("p99_ms", "p99 (ms)", _num(1), "min"),
    ("requests", "requests", _num(0), None),
    ("errors", "errors", _num(0), "min"),
    ("switches", "switches", _num(0), None),
    ("upgrades", "upgraded", _num(1, pct=True), None),
    ("fallbacks", "fell back", _num(1, pct=True), None),
)


def _cells(p: PolicyJSON) -> dict[str, Cell]:
    """A policy's summary by column key."""
    return {"effective_accuracy": p["effective_accuracy"], "on_time": p["on_time"],
            "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "requests": p["requests"],
            "errors": p["errors"], "switches": p["switches"],
            "upgrades": p.get("upgrades"), "fallbacks": p.get("fallbacks")}


def _best(rows: Mapping[str, Mapping[str, Cell]]) -> dict[str, float]:
    """Best value per column over the real policies (the oracle is a bound, not a contender)."""
    best = {}
    for key, _, _, how in COLUMNS:
        values = [v for n, r in rows.items() if n != ORACLE and (v := r.get(key)) is not None]
        if how and values:
            best[key] = max(values) if how == "max" else min(values)
    return best


def _summary_table(summary: SummaryDoc) -> str:
    rows = {name: _cells(p) for name, p in summary["policies"].items()}
    best = _best(rows)
    head = "<tr><th>policy</th>" + "".join(f"<th>{escape(h)}</th>" for _, h, _, _ in COLUMNS)
    lines = [head + "</tr>"]
    for name, r in rows.items():
        bound = name == ORACLE
        label = escape(name) + (" (upper bound, computed in the simulator)" if bound else "")
        cells = [f"<td>{label}</td>"]
        for key, _, fmt, _ in COLUMNS:
            hit = not bound and key in best and r.get(key) == best[key]
            cells.append(f'<td class="num{" best" if hit else ""}">{escape(fmt(r.get(key)))}</td>')
        row_class = ' class="bound"' if bound else ""
        lines.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
    note = ('<p class="note">Highlighted: the best value in each column among the policies run '
            "(highest effective accuracy and on-time, lowest latency and errors). Upgraded, "
            "fell back: the answered requests a more accurate variant than the one in force "
            "served (they found a replica free and nothing queued behind them), and those a "
            "lighter one served (the one in force would have answered them late).</p>")
    return "<table>" + "\n".join(lines) + "</table>" + note


def _rounds_html(summary: SummaryDoc) -> str:
    """Each policy's effective accuracy in each round, their mean, and the switching policies'
    margins over the best static variant (nothing for a run of one round)."""
    rounds = summary.get("rounds")
    if rounds is None:
        return ""
    n = len(rounds["orders"])
    fmt = _num(4)
    head = ("<tr><th>policy</th>" + "".join(f"<th>round {r + 1}</th>" for r in range(n))
            + "<th>mean</th></tr>")
    lines = [head]
    for name, runs in rounds["policies"].items():
        cells = [fmt(p["effective_accuracy"]) for p in runs]
        cells.append(fmt(rounds["mean_effective_accuracy"][name]))
        lines.append(f"<tr><td>{escape(name)}</td>"
                     + "".join(f'<td class="num">{escape(c)}</td>' for c in cells) + "</tr>")
    for name, margins in rounds["margin_over_best_static"].items():
        lines.append(f"<tr><td>{escape(name)} − best static</td>"
                     + "".join(f'<td class="num">{escape(_signed(m))}</td>' for m in margins)
                     + "</tr>")
    orders = "; ".join(f"round {r + 1}: " + ", ".join(o) for r, o in enumerate(rounds["orders"]))
    return (f"<h3>Effective accuracy in each of {n} rounds</h3>"
            '<p class="note">Every policy ran the same schedule once per round, each round in '
            "the order below, so that a drift of the host's speed weighs on all alike. The "
            "table above, the figures and the simulated comparison are round 1's. Orders: "
            f"{escape(orders)}.</p><table>" + "\n".join(lines) + "</table>")


def _signed(v: float | None) -> str:
    return "—" if v is None else f"{v:+.4f}"


def _figure_html(path: Path, context: JSONObject) -> str:
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path}: not a PNG file; the report embeds PNG figures only")
    given = context.get("captions")
    captions = {**CAPTIONS, **({str(k): str(v) for k, v in given.items()}
                               if isinstance(given, Mapping) else {})}
    caption = captions.get(path.name) or captions.get(path.stem) or next(
        (c for k, c in CAPTIONS.items() if path.stem.startswith(k)),
        path.stem.replace("_", " "))
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img alt="{escape(path.stem)}" src="{uri}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _sim_table(checks: Sequence[SimCheck]) -> str:
    if not checks:
        return '<p class="note">No policy was run both in the simulator and live.</p>'
    head = ("<tr><th>policy</th><th>on time, simulated</th><th>on time, measured</th>"
            f"<th>within {ON_TIME_TOL:g}</th><th>p99 simulated (ms)</th>"
            f"<th>p99 measured (ms)</th><th>error</th><th>within {P99_REL_TOL:.0%}</th></tr>")
    pct, ms = _num(1, pct=True), _num(1)
    why = any(c.why for c in checks)
    lines = [head.replace("</tr>", "<th>why off</th></tr>") if why else head]
    for c in checks:
        err = "—" if math.isnan(c.p99_rel_error) else f"{c.p99_rel_error:+.1%}"
        lines.append(
            f"<tr><td>{escape(c.policy)}</td><td class=\"num\">{pct(c.on_time_simulated)}</td>"
            f"<td class=\"num\">{pct(c.on_time_measured)}</td>{_verdict(c.on_time_ok)}"
            f"<td class=\"num\">{ms(c.p99_simulated_ms)}</td>"
            f"<td class=\"num\">{ms(c.p99_measured_ms)}</td><td class=\"num\">{err}</td>"
            f"{_verdict(c.p99_ok)}{f'<td>{escape(c.why)}</td>' if why else ''}</tr>")
    passed = sum(c.ok for c in checks)
    replays = [c for c in checks if c.replayed is not None]
    within = sum(bool(c.replay_ok) for c in replays)
    replayed = (f" Replayed with each run's own service times: {within} of {len(replays)} "
                "within both." if replays else "")
    return ("<table>" + "\n".join(lines) + "</table>"
            f'<p class="note">{passed} of {len(checks)} policies within both tolerances.'
            f'{replayed}</p>')


def _verdict(ok: bool) -> str:
    return '<td class="pass">pass</td>' if ok else '<td class="fail">fail</td>'


def _notes_html(notes: JSONObject) -> str:
    if not notes:
        return ""
    items = "".join(f"<li><b>{escape(str(k))}</b>: {escape(_plain(v))}</li>"
                    for k, v in notes.items())
    return f"<h2>Notes</h2><ul>{items}</ul>"
