"""The report's figures, rendered with matplotlib's Agg canvas to base64 PNG ``data:`` URIs.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`: no pyplot, no global backend
switch, nothing left open after a call. Each function returns ``None`` when there is
nothing to plot, and the page then leaves the figure out.

Beyond :data:`MAX_DRAWN_PARTIES` parties, per-party figures show the distribution across
parties instead of one mark per party (a median line with its 10-90 % band per round, a
histogram of final metrics, a box per class of label shares): they stay readable, and their
cost no longer grows with the number of parties (a 1,000-party report renders in about a
second instead of a minute).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from fedsilo.report._model import Report, metric_label

DPI = 150
GLOBAL_COLOR = "#1b2a49"
BASELINE_COLOR = "#c0392b"
MAX_LEGEND_PARTIES = 12
MAX_LEGEND_CLASSES = 20
MAX_LABEL_CHARS = 24
BAR_METRICS = ("accuracy", "f1", "auc")
MAX_DRAWN_PARTIES = 20  # more parties: per-party figures show distributions
BAND = (10, 90)  # percentiles of the party band in the convergence plot

RGBA = tuple[float, float, float, float]


def label_text(name: str) -> str:
    """A user string made safe for matplotlib: shortened, ``$`` not read as mathtext."""
    short = name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"
    return short.replace("$", r"\$")


def palette(n: int) -> list[RGBA]:
    """``n`` distinct colours: tab10 / tab20 when they suffice, then a sampled colormap."""
    if n <= 10:
        cmap = colormaps["tab10"]
        return [tuple(cmap(i)) for i in range(n)]  # type: ignore[misc]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [tuple(cmap(i)) for i in range(n)]  # type: ignore[misc]
    cmap = colormaps["turbo"]
    return [tuple(cmap(0.05 + 0.9 * i / (n - 1))) for i in range(n)]  # type: ignore[misc]


def to_data_uri(fig: Figure) -> str:
    FigureCanvasAgg(fig)  # attaches itself to the figure: Agg, whatever the global backend
    buf = io.BytesIO()
    # No "Software" text chunk: the bytes then depend on the data only, not the version.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.set_facecolor("white")
    return fig


def style_axes(ax: Axes) -> None:
    ax.grid(True, color="#e3e6ea", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def _ink_on(color: RGBA) -> str:
    """White or near-black text, whichever reads better on ``color``."""
    r, g, b, _ = color
    return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.6 else GLOBAL_COLOR


def _values(series: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in series]


def convergence(report: Report) -> str | None:
    """Global loss and accuracy per round; baseline dashed; each party's curve faintly."""
    if not report.rounds:
        return None
    panels = [m for m in ("loss", "accuracy") if m in report.metric_names()]
    if not panels:
        return None
    xs = [r.number for r in report.rounds]
    colors = dict(zip(report.parties, palette(len(report.parties)), strict=True))
    fig = new_figure(10.0, 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    handles: dict[str, Line2D] = {}
    many = len(report.parties) > MAX_DRAWN_PARTIES
    for ax, metric in zip(axes, panels, strict=True):
        style_axes(ax)
        if many:
            _party_band(ax, report, metric, handles)
        for party in [] if many else report.parties:
            ys = _values([r.parties.get(party, {}).get(metric) for r in report.rounds])
            if all(math.isnan(y) for y in ys):
                continue
            (line,) = ax.plot(
                xs,
                ys,
                color=colors[party],
                alpha=0.45,
                linewidth=1.1,
                marker="o",
                markersize=2.5,
                label=label_text(party),
            )
            handles.setdefault(party, line)
        ys = _values([r.global_metrics.get(metric) for r in report.rounds])
        (line,) = ax.plot(
            xs,
            ys,
            color=GLOBAL_COLOR,
            linewidth=2.2,
            marker="o",
            markersize=4,
            label="global",
            zorder=5,
        )
        handles.setdefault("\0global", line)
        base = report.baseline.get(metric) if report.baseline is not None else None
        if base is not None:
            line = ax.axhline(
                base,
                color=BASELINE_COLOR,
                linestyle="--",
                linewidth=1.4,
                label="centralized baseline",
                zorder=4,
            )
            handles.setdefault("\0baseline", line)
        ax.set_title(f"{metric_label(metric)} per round", fontsize=10, loc="left")
        ax.margins(y=0.08)
        ax.set_xlabel("round", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ordered = [handles[k] for k in ("\0global", "\0baseline", "\1band") if k in handles]
    party_lines = [h for k, h in handles.items() if not k.startswith(("\0", "\1"))]
    if len(party_lines) <= MAX_LEGEND_PARTIES:
        ordered += party_lines
    elif party_lines:
        ordered.append(Line2D([], [], color="grey", alpha=0.45, label="each party"))
    fig.legend(
        handles=ordered,
        loc="outside lower center",
        ncol=min(len(ordered), 6),
        fontsize=8,
        frameon=False,
    )
    return to_data_uri(fig)


def _party_band(ax: Axes, report: Report, metric: str, handles: dict[str, Line2D]) -> None:
    """The parties' median per round and the band between the BAND percentiles."""
    xs, med, low, high = [], [], [], []
    for r in report.rounds:
        values = [v.get(metric) for v in r.parties.values()]
        finite = np.array([v for v in values if v is not None], dtype=np.float64)
        if finite.size:
            xs.append(r.number)
            lo, mid, hi = np.percentile(finite, [BAND[0], 50, BAND[1]])
            low.append(float(lo))
            med.append(float(mid))
            high.append(float(hi))
    if not xs:
        return
    ax.fill_between(xs, low, high, color="grey", alpha=0.25, linewidth=0)
    (line,) = ax.plot(
        xs,
        med,
        color="grey",
        linewidth=1.2,
        marker="o",
        markersize=2.5,
        label=f"parties: median, {BAND[0]}-{BAND[1]} % band",
    )
    handles.setdefault("\1band", line)


def _zoomed_limits(values: list[float]) -> tuple[float, float]:
    """Axis limits that make differences between parties visible: from a round tenth below
    the lowest value (never below 0), with a little room past the highest."""
    lo, hi = min(values), max(values)
    low = max(0.0, math.floor((lo - 0.1) * 10) / 10) if lo >= 0 else lo * 1.1
    return low, hi + max(hi - low, 0.1) * 0.04


def party_bars(report: Report) -> str | None:
    """Final accuracy / F1 / AUC per party (horizontal bars, one panel per metric), with the
    global model (dashed) and the centralized baseline (dotted) as reference lines."""
    parties = [p for p in report.parties if p in report.final_parties]
    names = set(report.metric_names())
    panels = [
        m
        for m in BAR_METRICS
        if m in names and any(report.final_parties[p].get(m) is not None for p in parties)
    ]
    if not parties or not panels:
        return None
    if len(parties) > MAX_DRAWN_PARTIES:
        return _party_histograms(report, parties, panels)
    colors = dict(zip(report.parties, palette(len(report.parties)), strict=True))
    fig = new_figure(10.0, max(2.4, 1.1 + 0.36 * len(parties)))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True, sharex=True)[0]
    shown: list[float] = []
    handles: dict[str, Line2D] = {}
    rows = list(range(len(parties)))
    for ax, metric in zip(axes, panels, strict=True):
        style_axes(ax)
        ax.grid(False, axis="y")
        values = [report.final_parties[p].get(metric) for p in parties]
        bars = ax.barh(rows, _values(values), color=[colors[p] for p in parties], height=0.7)
        texts = ax.bar_label(
            bars,
            labels=["" if v is None else f"{v:.3f}" for v in values],
            label_type="center",
            fontsize=7,
            fontweight="bold",
        )
        for text, party in zip(texts, parties, strict=True):
            text.set_color(_ink_on(colors[party]))
        shown.extend(v for v in values if v is not None)
        shown.extend(_reference_lines(ax, report, metric, handles))
        ax.set_title(f"Final {metric_label(metric)}", fontsize=10, loc="left")
    axes[0].set_yticks(rows, [label_text(p) for p in parties])
    axes[0].invert_yaxis()
    axes[0].set_xlim(*_zoomed_limits(shown))
    _reference_legend(fig, handles)
    return to_data_uri(fig)


def _reference_lines(
    ax: Axes, report: Report, metric: str, handles: dict[str, Line2D]
) -> list[float]:
    """The global model (dashed) and the baseline (dotted) at their final ``metric``; returns
    the values drawn."""
    ref = report.final_global.get(metric)
    if ref is not None:
        handles["global"] = ax.axvline(
            ref, color=GLOBAL_COLOR, linestyle="--", linewidth=1.4, label="global model"
        )
    base = report.baseline.get(metric) if report.baseline is not None else None
    if base is not None:
        handles["baseline"] = ax.axvline(
            base, color=BASELINE_COLOR, linestyle=":", linewidth=1.6, label="centralized baseline"
        )
    return [v for v in (ref, base) if v is not None]


def _reference_legend(fig: Figure, handles: dict[str, Line2D]) -> None:
    if handles:
        fig.legend(
            handles=list(handles.values()),
            loc="outside lower center",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
        )


def _party_histograms(report: Report, parties: list[str], panels: list[str]) -> str:
    """Many parties: one histogram per metric of the parties' final values."""
    fig = new_figure(10.0, 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    handles: dict[str, Line2D] = {}
    for ax, metric in zip(axes, panels, strict=True):
        style_axes(ax)
        values = [report.final_parties[p].get(metric) for p in parties]
        finite = [v for v in values if v is not None]
        ax.hist(finite, bins=min(30, max(5, len(finite) // 10)), color="#7f8fa6")
        _reference_lines(ax, report, metric, handles)
        ax.set_title(
            f"Final {metric_label(metric)}, {len(finite)} parties", fontsize=10, loc="left"
        )
    axes[0].set_ylabel("parties", fontsize=9)
    _reference_legend(fig, handles)
    return to_data_uri(fig)


def label_distribution(report: Report) -> str | None:
    """Stacked horizontal bars: each party's training label counts by class."""
    parties = [p for p, d in report.party_data.items() if d.label_counts]
    classes = [
        c for c in report.classes if any(report.party_data[p].label_counts.get(c) for p in parties)
    ]
    if not parties or not classes:
        return None
    if len(parties) > MAX_DRAWN_PARTIES:
        return _label_share_boxes(report, parties, classes)
    colors = palette(len(classes))
    fig = new_figure(10.0, 1.3 + 0.42 * len(parties))
    ax = fig.subplots()
    style_axes(ax)
    ax.grid(False, axis="y")
    rows = list(range(len(parties)))
    left = [0.0] * len(parties)
    for cls, color in zip(classes, colors, strict=True):
        counts = [float(report.party_data[p].label_counts.get(cls) or 0) for p in parties]
        ax.barh(
            rows,
            counts,
            left=left,
            color=color,
            height=0.65,
            label=label_text(cls),
            edgecolor="white",
            linewidth=0.4,
        )
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.set_yticks(rows, [label_text(p) for p in parties])
    ax.invert_yaxis()
    ax.set_xlabel("training examples", fontsize=9)
    ax.set_title("Label distribution per party", fontsize=10, loc="left")
    if len(classes) <= MAX_LEGEND_CLASSES:
        ax.legend(
            title="label",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=7,
            title_fontsize=8,
            frameon=False,
            ncol=1 if len(classes) <= 10 else 2,
        )
    return to_data_uri(fig)


def _label_share_boxes(report: Report, parties: list[str], classes: list[str]) -> str:
    """Many parties: per class, the distribution of its share of each party's rows."""
    counts = np.array(
        [[float(report.party_data[p].label_counts.get(c) or 0) for c in classes] for p in parties]
    )
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    fig = new_figure(10.0, 3.4)
    ax = fig.subplots()
    style_axes(ax)
    ax.boxplot(
        [shares[:, j] for j in range(len(classes))],
        whis=(5, 95),
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "#c8d0dc", "edgecolor": GLOBAL_COLOR},
        medianprops={"color": GLOBAL_COLOR},
    )
    ax.set_xticks(range(1, len(classes) + 1), [label_text(c) for c in classes])
    ax.set_xlabel("label", fontsize=9)
    ax.set_ylabel("share of the party's training rows", fontsize=9)
    ax.set_title(
        f"Label shares across {len(parties)} parties (box: quartiles, whiskers: 5-95 %)",
        fontsize=10,
        loc="left",
    )
    return to_data_uri(fig)
