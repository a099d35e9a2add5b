"""Rendering a :class:`~fedsilo.analytics.run.QueryResult`: CSV, JSON, HTML (the CLI's table is in
:mod:`fedsilo.cli.query`).

The HTML page has one chart per aggregate (bars per group with their 95% intervals; a
histogram per group for HISTOGRAM), drawn with matplotlib's Agg canvas into inline PNGs like
the training report (:mod:`fedsilo.report.plots`).
"""

from __future__ import annotations

import csv
import html
import io
import json

from matplotlib.figure import Figure

from fedsilo.analytics.run import Cell, QueryResult
from fedsilo.analytics.sql import Agg
from fedsilo.report.plots import label_text, to_data_uri


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3e}"


def cell_text(cell: Cell) -> str:
    if cell.value is None:
        return "-"
    if isinstance(cell.value, list):
        return "[" + ", ".join(_fmt(v) for v in cell.value) + "]"
    sd = cell.sd if isinstance(cell.sd, float) else None
    return _fmt(cell.value) + (f" ± {_fmt(1.96 * sd)}" if sd else "")


def to_csv(result: QueryResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    header = [*result.group_by, "suppressed"]
    for label in result.labels:
        header += [label, f"{label} noise_sd", f"{label} ci95_low", f"{label} ci95_high"]
    w.writerow(header)
    for key, cells, sup in zip(result.groups, result.cells, result.suppressed, strict=True):
        row: list[object] = [*key, sup]
        for c in cells:
            if isinstance(c.value, list):
                row += [json.dumps(c.value), json.dumps(c.sd), json.dumps(c.ci), ""]
            else:
                lo, hi = c.ci if isinstance(c.ci, tuple) else (None, None)
                row += [c.value, c.sd, lo, hi]
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_json_text(result: QueryResult) -> str:
    return json.dumps(result.to_json(), indent=2)


def _chart(result: QueryResult, index: int) -> str | None:
    agg = result.aggregates[index]
    rows = [
        (" / ".join(map(str, k)) or "all", cells[index])
        for k, cells, sup in zip(result.groups, result.cells, result.suppressed, strict=True)
        if not sup and cells[index].value is not None
    ]
    if not rows:
        return None
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    if agg.func is Agg.HISTOGRAM:
        for name, cell in rows:
            assert isinstance(cell.value, list)
            ax.stairs(cell.value, list(agg.bins), label=label_text(name))
        ax.set_xlabel(label_text(agg.columns[0]))
        ax.set_ylabel("count")
        if len(rows) <= 12:
            ax.legend(fontsize="small")
    else:
        names = [label_text(n) for n, _ in rows]
        values, low, high = [], [], []
        for _, c in rows:
            v = float(c.value)  # type: ignore[arg-type]
            lo, hi = c.ci if isinstance(c.ci, tuple) else (v, v)
            values.append(v)
            low.append(v - lo)
            high.append(hi - v)
        ax.bar(names, values, yerr=[low, high], color="#1b2a49", capsize=3)
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(label_text(agg.label))
    fig.tight_layout()
    return to_data_uri(fig)


def to_html(result: QueryResult) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fedsilo query</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:auto}td,th{padding:2px 8px}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f3f3f3}</style></head><body>",
        f"<h1>Federated query</h1><pre>{html.escape(result.sql)}</pre>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in result.notices) + "</ul>",
        f"<p>mechanism {result.mechanism.value}, epsilon {result.epsilon:.4g}, "
        f"delta {result.delta:g}</p><table><tr>",
    ]
    parts += [f"<th>{html.escape(h)}</th>" for h in (*result.group_by, *result.labels)]
    parts.append("</tr>")
    for key, cells, sup in zip(result.groups, result.cells, result.suppressed, strict=True):
        vals = ["suppressed"] * len(cells) if sup else [cell_text(c) for c in cells]
        parts.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (*key, *vals)) + "</tr>"
        )
    parts.append("</table>")
    for i in range(len(result.aggregates)):
        uri = _chart(result, i)
        if uri is not None:
            parts.append(f"<p><img alt='{html.escape(result.labels[i])}' src='{uri}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
