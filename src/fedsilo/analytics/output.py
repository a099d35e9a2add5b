"""Rendering a :class:`~fedsilo.analytics.run.QueryResult`: CSV, JSON, HTML (the CLI's table is in
:mod:`fedsilo.cli.query`).

The HTML page has one chart per aggregate (bars per group with their 95% intervals; a
histogram per group for HISTOGRAM), drawn with matplotlib's Agg canvas into inline PNGs like
the training report (:mod:`fedsilo.report.plots`).
"""

from __future__ import annotations

import csv
import io
import json

from fedsilo.analytics.run import Cell, QueryResult
from fedsilo.analytics.sql import Agg
from fedsilo.report.plots import GLOBAL_COLOR, label_text, new_figure, style_axes, to_data_uri


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
            lo: float | list[float] | None
            hi: float | list[float] | None
            if isinstance(c.ci, list):  # HISTOGRAM: one low and one high per bin, as lists
                lo, hi = [a for a, _ in c.ci], [b for _, b in c.ci]
            else:
                lo, hi = c.ci if isinstance(c.ci, tuple) else (None, None)
            row += [json.dumps(v) if isinstance(v, list) else v for v in (c.value, c.sd, lo, hi)]
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
    fig = new_figure(10.0, 3.2)  # the training reports' look (fedsilo.report.plots)
    ax = fig.subplots()
    style_axes(ax)
    if agg.func is Agg.HISTOGRAM:
        for name, cell in rows:
            assert isinstance(cell.value, list)
            ax.stairs(cell.value, list(agg.bins), label=label_text(name), linewidth=2)
        ax.set_xlabel(label_text(agg.columns[0]), fontsize=9)
        ax.set_ylabel("count", fontsize=9)
        if len(rows) <= 12:
            ax.legend(fontsize=8, frameon=False)
    else:
        names = [label_text(n) for n, _ in rows]
        values, low, high = [], [], []
        for _, c in rows:
            v = float(c.value)  # type: ignore[arg-type]
            lo, hi = c.ci if isinstance(c.ci, tuple) else (v, v)
            values.append(v)
            low.append(v - lo)
            high.append(hi - v)
        ax.bar(names, values, yerr=[low, high], color=GLOBAL_COLOR, capsize=3)
        ax.tick_params(axis="x", rotation=30)
    ax.set_title(label_text(agg.label), fontsize=10, loc="left")
    return to_data_uri(fig)


def to_html(result: QueryResult) -> str:
    """The answer as a page: ``templates/analytics.html.j2``, a child of the one page base."""
    from fedsilo.report.html import render_page

    dp = f"{result.mechanism.value}" if result.epsilon else "none"
    meta = [("Mechanism", dp), ("Groups", f"{len(result.groups):,}")]
    if result.epsilon:
        meta += [("Epsilon", f"{result.epsilon:.4g}"), ("Delta", f"{result.delta:g}")]
    rows = [
        (
            "muted" if sup else "",
            [*map(str, key), *(["suppressed"] * len(cells) if sup else map(cell_text, cells))],
        )
        for key, cells, sup in zip(result.groups, result.cells, result.suppressed, strict=True)
    ]
    charts = []
    for i, label in enumerate(result.labels):
        uri = _chart(result, i)
        if uri is not None:
            charts.append(
                {
                    "uri": uri,
                    "alt": label,
                    "caption": (
                        f"{label}: noisy counts per bin, one line per group"
                        if result.aggregates[i].func is Agg.HISTOGRAM
                        else f"{label} per group, with its 95% interval"
                    ),
                    "empty": "",
                }
            )
    return render_page(
        "analytics.html.j2",
        title="fedsilo query",
        eyebrow="federated query",
        heading="Federated query",
        meta=meta,
        source="a federated query",
        sql=result.sql,
        notices=result.notices,
        head=[*result.group_by, *result.labels],
        rows=rows,
        text_columns=tuple(range(len(result.group_by))),
        spent=[
            ("", [party, f"{spent:.4g}", f"{budget:g}"])
            for party, (spent, budget) in result.spent.items()
        ],
        charts=charts,
    )
