"""A self-contained HTML report of a vertical job (hetero LR or SecureBoost).

``render_report(doc)`` turns a vertical job's ``metrics.json`` document (the shared core of
:mod:`fedsilo.result_doc` plus its ``vertical`` section) into one HTML page with the
horizontal report's look and Content-Security-Policy, figures as inline PNG
``data:`` URIs (:func:`fedsilo.report.plots.to_data_uri`), no script and no external resource:
``templates/vertical.html.j2``, a child of the one page base (:mod:`fedsilo.report.html`).
Read (every key may be absent): ``job.name``, ``final.global`` (held-out), ``baseline``,
``history`` (``epoch``: ``taylor_loss``; ``tree``: ``train_loss``, ``valid_loss``; both
``duration_s``), ``wall_time_s``, and ``vertical``: ``algorithm`` (``"hetero_lr"`` |
``"secureboost"``), ``he_scheme``, ``guest``, ``hosts``, ``train``, ``baseline_guest_only``,
``alignment`` (``aligned``, ``train``, ``test``, ``local_rows``: party -> rows; ``method``,
``"psi"`` when absent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.ticker import MaxNLocator

from fedsilo.report._fmt import MISSING, esc, fmt_count, fmt_duration, fmt_metric
from fedsilo.report._model import as_count, as_list, as_mapping, as_number
from fedsilo.report.html import (
    Markup,
    html_card,
    html_figure,
    html_meta,
    html_table,
    render_page,
)
from fedsilo.report.importance import importance_section
from fedsilo.report.plots import (
    BASELINE_COLOR,
    GLOBAL_COLOR,
    label_text,
    new_figure,
    style_axes,
    to_data_uri,
)

__all__ = ["render_report"]

METRICS = ("auc", "ks", "accuracy", "f1")
LABELS = {"auc": "AUC", "ks": "KS", "accuracy": "Accuracy", "f1": "F1", "loss": "Log loss"}
TRAIN_COLOR = "#7f9cc9"
GUEST_ONLY_COLOR = "#c9a27f"
NAMES = {"hetero_lr": "hetero logistic regression", "secureboost": "SecureBoost"}
MODEL_PARTS = {
    "hetero_lr": (
        "its weights and the intercept",
        "its own weights (one per feature it holds)",
    ),
    "secureboost": (
        "the trees (structure, leaf weights, which party splits each node) and the split "
        "table of its own features",
        "its split table (record id -> its feature and threshold); the guest's trees only "
        "say “host, record r”",
    ),
}


def _numbers(value: Any) -> list[float]:
    return [math.nan if as_number(v) is None else float(v) for v in as_list(value)]


def _metrics(raw: Any) -> dict[str, float]:
    out = {str(k): as_number(v) for k, v in as_mapping(raw).items()}
    return {k: v for k, v in out.items() if v is not None}


def _section(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_mapping(doc.get("vertical"))


def _algorithm(doc: Mapping[str, Any]) -> str:
    return str(_section(doc).get("algorithm") or "hetero_lr")


def _steps(doc: Mapping[str, Any], key: str) -> list[float]:
    """``key`` of every history entry (a loss, or ``duration_s``), NaN where missing."""
    entries = [as_mapping(e) for e in as_list(doc.get("history"))]
    return _numbers([e.get(key) for e in entries]) if any(key in e for e in entries) else []


def _curves(doc: Mapping[str, Any], algorithm: str) -> tuple[str, list[tuple[str, list[float]]]]:
    if algorithm == "secureboost":
        curves = [
            ("training loss", _steps(doc, "train_loss")),
            ("validation loss", [v for v in _steps(doc, "valid_loss") if not math.isnan(v)]),
        ]
        return "tree", [(n, c) for n, c in curves if c]
    curve = _steps(doc, "taylor_loss")
    return "epoch", [("Taylor loss (training)", curve)] if curve else []


def loss_plot(doc: Mapping[str, Any], algorithm: str) -> str | None:
    """Loss per epoch (hetero LR) or per tree (SecureBoost), plus seconds per step."""
    unit, curves = _curves(doc, algorithm)
    seconds = _steps(doc, "duration_s")
    if not curves and not seconds:
        return None
    fig = new_figure(10.0, 3.4)
    axes = fig.subplots(1, 2 if curves and seconds else 1, squeeze=False)[0]
    if curves:
        ax = axes[0]
        style_axes(ax)
        for (name, ys), color in zip(curves, (GLOBAL_COLOR, BASELINE_COLOR), strict=False):
            xs = list(range(1, len(ys) + 1))
            ax.plot(xs, ys, color=color, linewidth=2, marker="o", markersize=3, label=name)
        ax.set_title(f"Loss per {unit}", fontsize=10, loc="left")
        ax.legend(fontsize=8, frameon=False)
    if seconds:
        ax = axes[-1]
        style_axes(ax)
        ax.bar(range(1, len(seconds) + 1), seconds, color=TRAIN_COLOR)
        ax.set_title(f"Seconds per {unit}", fontsize=10, loc="left")
    for ax in axes:
        ax.set_xlabel(unit, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return to_data_uri(fig)


SHORT = {
    "federated, held-out": "federated (held-out)",
    "federated, training rows": "federated (train)",
    "centralized baseline, held-out": "centralized",
    "guest-only baseline, held-out": "guest only",
}


def metrics_plot(rows: Sequence[tuple[str, Mapping[str, float]]]) -> str | None:
    """Grouped bars: each metric for each model (federated held-out / train, centralized)."""
    names = [m for m in METRICS if any(m in values for _, values in rows)]
    if not names:
        return None
    colors = dict(
        zip(SHORT, (GLOBAL_COLOR, TRAIN_COLOR, BASELINE_COLOR, GUEST_ONLY_COLOR), strict=True)
    )
    fig = new_figure(10.0, 3.2)
    ax = fig.subplots()
    style_axes(ax)
    width = 0.8 / len(rows)
    for i, (label, values) in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(names))]
        ys = [values.get(m, math.nan) for m in names]
        bars = ax.bar(
            xs,
            ys,
            width=width * 0.95,
            color=colors.get(label, "grey"),
            label=label_text(SHORT.get(label, label)),
        )
        ax.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(names)), [LABELS[m] for m in names])
    ax.set_ylim(0, 1.08)
    ax.set_title("Metrics", fontsize=10, loc="left")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return to_data_uri(fig)


def _parties(doc: Mapping[str, Any], algorithm: str) -> str:
    section = _section(doc)
    align = as_mapping(section.get("alignment"))
    local = {str(k): as_count(v) for k, v in as_mapping(align.get("local_rows")).items()}
    guest = section.get("guest") if isinstance(section.get("guest"), str) else None
    hosts = [str(h) for h in as_list(section.get("hosts"))]
    names = list(dict.fromkeys([*([guest] if guest else []), *hosts, *local]))
    items = [
        ("Aligned customers", fmt_count(as_count(align.get("aligned")))),
        ("Training rows", fmt_count(as_count(align.get("train")))),
        ("Held-out rows", fmt_count(as_count(align.get("test")))),
    ]
    guest_part, host_part = MODEL_PARTS.get(algorithm, ("its model part", "its model part"))
    roles = {**{h: "host" for h in hosts}, **({guest: "guest (labels)"} if guest else {})}
    rows = [("", [esc(n), esc(roles.get(n, MISSING)), fmt_count(local.get(n))]) for n in names]
    table = (
        html_table(["Party", "Role", "Local rows"], rows, text_columns=frozenset({1}))
        if rows
        else "<p class='empty'>No per-party row counts recorded.</p>"
    )
    method = align.get("method", "psi")
    psi = (
        "<p class='note'>Rows were aligned by private set intersection: no party learns the "
        "other parties' customers outside the intersection.</p>"
        if method == "psi"
        else f"<p class='note'>Rows aligned by: {esc(method)}.</p>"
    )
    return (
        "<section id='parties'><h2>Parties and alignment</h2>"
        f"{html_meta(items)}<h3>Rows per party</h3>{table}"
        f"{psi}"
        "<h3>Where the model lives</h3><ul>"
        f"<li>The guest keeps {esc(guest_part)}.</li>"
        f"<li>Each host keeps {esc(host_part)}.</li>"
        "<li>No party, the coordinator included, holds the whole model or another party's "
        "features; scoring a new row needs every party.</li></ul></section>"
    )


def _results(doc: Mapping[str, Any], algorithm: str) -> str:
    test = _metrics(as_mapping(doc.get("final")).get("global"))
    train, base = _metrics(_section(doc).get("train")), _metrics(doc.get("baseline"))
    rows = [(label, m) for label, m in (("federated, held-out", test),) if m]
    if train:
        rows.append(("federated, training rows", train))
    guest_only = _metrics(_section(doc).get("baseline_guest_only"))
    if base:
        rows.append(("centralized baseline, held-out", base))
    if guest_only:
        rows.append(("guest-only baseline, held-out", guest_only))
    extra = ["loss"] if any("loss" in m for _, m in rows) else []
    names = [*METRICS, *extra]
    cards = [
        html_card(f"Held-out {LABELS[m]}", fmt_metric(test[m]), sub)
        for m, sub in (
            ("auc", f"centralized {fmt_metric(base['auc'])}" if "auc" in base else ""),
            ("ks", ""),
        )
        if m in test
    ]
    parts = ["<section id='results'><h2>Results</h2>"]
    if cards:
        parts.append(f"<div class='cards'>{''.join(cards)}</div>")
    if not rows:
        parts.append("<p class='empty'>No metrics recorded.</p></section>")
        return "".join(parts)
    css = {"centralized baseline, held-out": "baseline", "federated, held-out": "global"}
    table_rows = [
        (css.get(label, ""), [esc(label), *(fmt_metric(m.get(n)) for n in names)])
        for label, m in rows
    ]
    parts.append(html_table(["Model", *(LABELS[n] for n in names)], table_rows))
    what = "logistic regression" if algorithm == "hetero_lr" else "gradient-boosted model"
    note = (
        f"Centralized baseline: a {what} trained on all parties' columns pooled in one place "
        "(what the federation avoids), scored on the same held-out rows."
        if base
        else "No centralized baseline was trained for this job."
    )
    if base and guest_only and "auc" in base and "auc" in guest_only:
        note += (
            f" Guest-only baseline: the same {what} on the guest's columns alone (what it has "
            f"without the hosts). The hosts' columns add {base['auc'] - guest_only['auc']:+.4f} "
            "held-out AUC."
        )
    parts.append(f"<p class='note'>{esc(note)}</p>")
    parts.append(
        html_figure(
            metrics_plot(rows),
            "Metrics of the federated model and the baseline",
            "AUC, KS, accuracy and F1 (threshold 0.5) of each model.",
            "No metrics to plot.",
        )
    )
    parts.append("</section>")
    return "".join(parts)


def _training(doc: Mapping[str, Any], algorithm: str) -> str:
    unit = "tree" if algorithm == "secureboost" else "epoch"
    seconds = [s for s in _steps(doc, "duration_s") if not math.isnan(s)]
    summary = ""
    if seconds:
        summary = (
            f"<p class='note'>{len(seconds):,} {unit}s, {fmt_duration(sum(seconds))} in all, "
            f"{fmt_duration(sum(seconds) / len(seconds))} per {unit} on average.</p>"
        )
    fig = html_figure(
        loss_plot(doc, algorithm),
        f"Loss and seconds per {unit}",
        f"Loss after each {unit} (left) and wall seconds per {unit} (right).",
        f"No per-{unit} loss or timing recorded.",
    )
    return f"<section id='training'><h2>Training</h2>{fig}{summary}</section>"


def render_report(doc: Mapping[str, Any]) -> str:
    """The report for one vertical job's ``metrics.json`` document, as HTML text."""
    algorithm, section = _algorithm(doc), _section(doc)
    job = str(as_mapping(doc.get("job")).get("name") or "vertical job")
    scheme = str(section.get("he_scheme") or MISSING)
    rows = as_mapping(as_mapping(section.get("alignment")).get("local_rows"))
    items = [
        ("Algorithm", NAMES.get(algorithm, algorithm)),
        ("Encryption", {"ckks": "CKKS", "paillier": "Paillier"}.get(scheme, scheme)),
        ("Parties", fmt_count(len(rows))),
        ("Wall time", fmt_duration(as_number(doc.get("wall_time_s")))),
    ]
    sections = [_results(doc, algorithm), _training(doc, algorithm), _parties(doc, algorithm)]
    importance = importance_section(doc)
    if importance:
        sections.insert(1, importance)
    return render_page(
        "vertical.html.j2",
        title=f"{job} · fedsilo vertical report",
        eyebrow="vertical training report",
        heading=job,
        meta=items,
        source="metrics.json",
        version=str(doc["fedsilo_version"]) if doc.get("fedsilo_version") else None,
        sections=[Markup(s) for s in sections],
    )
