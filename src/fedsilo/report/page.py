"""The training report: ``templates/training.html.j2``, a child of the one page base.

The sections are built here; every string that comes from the metrics (job and party names,
class labels, failure messages, config values) goes through :func:`~fedsilo.report._fmt.esc`
or the autoescaping templates (:mod:`fedsilo.report.html`). The page has no script and loads
nothing: a Content-Security-Policy forbids any fetch besides inline CSS and ``data:`` images,
as a second line of defence.
"""

from __future__ import annotations

import json
import pprint
from collections.abc import Mapping, Sequence
from typing import Any

from fedsilo.report import plots
from fedsilo.report._fmt import (
    MISSING,
    esc,
    fmt_count,
    fmt_duration,
    fmt_metric,
    fmt_ratio,
    ratio,
)
from fedsilo.report._model import LOWER_IS_BETTER, Report, load, metric_label
from fedsilo.report.html import (
    Markup,
    html_card,
    html_figure,
    html_meta,
    html_table,
    render_page,
)
from fedsilo.report.importance import importance_section
from fedsilo.report.privacy import privacy_section
from fedsilo.report.privacy_audit import privacy_audit_section

MAX_CLASS_COLUMNS = 12
MAX_CLASSES_LISTED = 20


def _metric_cells(values: Mapping[str, float | None], names: Sequence[str]) -> list[str]:
    return [fmt_metric(values.get(m)) for m in names]


# --- sections ---------------------------------------------------------------------------------


def _header_items(r: Report) -> list[tuple[str, str]]:
    rounds = str(len(r.rounds))
    if r.rounds_configured is not None and r.rounds_configured != len(r.rounds):
        rounds = f"{len(r.rounds)} of {r.rounds_configured}"
    return [
        ("Dataset", r.dataset or MISSING),
        ("Parties", fmt_count(len(r.parties))),
        ("Rounds", rounds),
        ("Seed", MISSING if r.seed is None else str(r.seed)),
        ("fedsilo", r.version or MISSING),
        ("Wall time", fmt_duration(r.wall_time_s)),
    ]


def _headline(r: Report) -> str:
    g, base = r.final_global, r.baseline
    cards = []
    for metric, title in (("accuracy", "Final global accuracy"), ("auc", "Final global AUC")):
        value = g.get(metric)
        if value is None:
            continue
        sub = ""
        if base is not None and base.get(metric) is not None:
            sub = f"centralized {fmt_metric(base.get(metric))} · ratio "
            sub += fmt_ratio(ratio(value, base.get(metric)))
        cards.append(html_card(title, fmt_metric(value), sub))
    if not cards:
        loss = g.get("loss")
        if loss is not None:
            cards.append(html_card("Final global loss", fmt_metric(loss)))
    parts = ["<section id='headline'><h2>Headline</h2>"]
    if r.final_from_last_round:
        parts.append("<p class='note'>No final metrics recorded; values are the last round's.</p>")
    parts.append(
        f"<div class='cards'>{''.join(cards)}</div>"
        if cards
        else "<p class='empty'>No final global metrics recorded.</p>"
    )
    if base is None:
        parts.append("<p class='note'>No centralized baseline was trained for this job.</p>")
    else:
        names = [m for m in r.metric_names() if g.get(m) is not None or base.get(m) is not None]
        rows = []
        for m in names:
            label = esc(metric_label(m))
            if m in LOWER_IS_BETTER:
                label += " <span class='muted'>(lower is better)</span>"
            rows.append(
                (
                    "",
                    [
                        label,
                        fmt_metric(g.get(m)),
                        fmt_metric(base.get(m)),
                        fmt_ratio(ratio(g.get(m), base.get(m))),
                    ],
                )
            )
        parts.append("<h3>Federated vs centralized</h3>")
        parts.append(
            html_table(["Metric", "Federated (global)", "Centralized", "Ratio fed / cent."], rows)
        )
        parts.append(
            "<p class='note'>Centralized: the same model trained on all parties' "
            "training data pooled, evaluated on the same test split.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _many(r: Report) -> bool:
    """Per-party figures show distributions (:data:`plots.MAX_DRAWN_PARTIES`)."""
    return len(r.parties) > plots.MAX_DRAWN_PARTIES


def _convergence(r: Report) -> str:
    parties = (
        f"the parties' own evaluations: median and {plots.BAND[0]}-{plots.BAND[1]} % band (grey)"
        if _many(r)
        else "each party's own evaluation (faint)"
    )
    fig = html_figure(
        plots.convergence(r),
        "Global loss and accuracy per round",
        f"Global model on the test split per round (bold); {parties}"
        + ("; centralized baseline (dashed)." if r.baseline is not None else "."),
        "No per-round loss or accuracy recorded.",
    )
    return f"<section id='convergence'><h2>Convergence</h2>{fig}</section>"


def _final(r: Report) -> str:
    names = r.metric_names()
    fig = html_figure(
        plots.party_bars(r),
        "Final metrics per party",
        (
            "How many parties reached each final metric on their own holdout"
            if _many(r)
            else "Each party's final metrics on its own holdout"
        )
        + "; dashed line: the global model on the test split"
        + ("; dotted: the centralized baseline" if r.baseline is not None else "")
        + ("." if _many(r) else ". The value axis is zoomed in: it does not start at 0."),
        "No per-party final metrics recorded.",
    )
    rows: list[tuple[str, Sequence[str]]] = [
        ("global", ["Global", *_metric_cells(r.final_global, names)])
    ]
    for p in r.parties:
        m = r.final_parties.get(p)
        if m is None:
            rows.append(
                (
                    "muted",
                    [
                        esc(p) + " <span class='muted'>(no final metrics)</span>",
                        *[MISSING] * len(names),
                    ],
                )
            )
        else:
            rows.append(("", [esc(p), *_metric_cells(m, names)]))
    if r.baseline is not None:
        rows.append(("baseline", ["Centralized baseline", *_metric_cells(r.baseline, names)]))
    head = ["", *(esc(metric_label(m)) for m in names)]
    table = html_table(head, rows) if names else "<p class='empty'>No final metrics recorded.</p>"
    return (
        f"<section id='parties'><h2>Final metrics</h2>{fig}"
        f"<h3>Final metrics table</h3>{table}</section>"
    )


def _rounds(r: Report) -> str:
    parts = ["<section id='rounds'><h2>Rounds</h2>"]
    if not r.rounds:
        parts.append("<p class='empty'>No rounds recorded.</p></section>")
        return "".join(parts)
    names = r.round_metric_names()
    show_train = any(x.train_loss is not None for x in r.rounds)
    show_attempts = any((x.attempts or 1) > 1 for x in r.rounds)
    head = ["Round", "Duration", "Participants"]
    head += ["Train loss"] if show_train else []
    head += ["Attempts"] if show_attempts else []
    head += [esc(metric_label(m)) for m in names]
    total = len(r.parties)
    rows: list[tuple[str, Sequence[str]]] = []
    for x in r.rounds:
        joined = len(x.participants) if x.participants else len(x.parties)
        who = f"{joined:,} / {total:,}" if total else f"{joined:,}"
        if x.failures:
            who += f" <span class='warn'>({len(x.failures):,} failed)</span>"
        cells = [str(x.number), fmt_duration(x.duration_s), who]
        cells += [fmt_metric(x.train_loss)] if show_train else []
        cells += [fmt_count(x.attempts)] if show_attempts else []
        cells += _metric_cells(x.global_metrics, names)
        rows.append(("", cells))
    parts.append("<h3>Global metrics per round</h3>")
    parts.append(html_table(head, rows))

    parts.append("<h3>Failures</h3>")
    failed = [(x.number, p, why) for x in r.rounds for p, why in x.failures.items()]
    if not failed:
        parts.append("<p class='empty'>No party failed in any round.</p>")
    else:
        rounds_hit = len({n for n, _, _ in failed})
        parts.append(
            f"<p class='note'>{rounds_hit:,} of {len(r.rounds):,} rounds had "
            f"failures; failed parties' updates were left out of those rounds.</p>"
        )
        parts.append(
            html_table(
                ["Round", "Party", "Reason"],
                [("", [str(n), esc(p), esc(why)]) for n, p, why in failed],
                text_columns=frozenset({1, 2}),
            )
        )
    parts.append("</section>")
    return "".join(parts)


def _data(r: Report) -> str:
    classes = r.classes
    listed = ", ".join(classes[:MAX_CLASSES_LISTED])
    if len(classes) > MAX_CLASSES_LISTED:
        listed += f", … ({len(classes) - MAX_CLASSES_LISTED:,} more)"
    items = [
        ("Dataset", r.dataset or MISSING),
        ("Kind", r.kind or MISSING),
        ("Features", fmt_count(r.features)),
        ("Classes", f"{len(classes):,} ({listed})" if classes else MISSING),
        ("Central test examples", fmt_count(r.test_examples)),
    ]
    parts = [f"<section id='data'><h2>Data</h2>{html_meta(items)}"]
    if not r.party_data:
        parts.append("<p class='empty'>No per-party data summary recorded.</p></section>")
        return "".join(parts)
    parties = r.party_data
    several = len(parties) > 1
    all_train = sum(d.train_examples or 0 for d in parties.values())
    all_holdout = sum(d.holdout_examples or 0 for d in parties.values())
    rows: list[tuple[str, Sequence[str]]] = []
    for p, d in parties.items():
        share = MISSING
        if d.train_examples is not None and all_train:
            share = f"{100 * d.train_examples / all_train:.1f} %"
        rows.append(
            ("", [esc(p), fmt_count(d.train_examples), fmt_count(d.holdout_examples), share])
        )
    if several:
        total_share = "100.0 %" if all_train else MISSING
        rows.append(
            ("total", ["All parties", fmt_count(all_train), fmt_count(all_holdout), total_share])
        )
    parts.append("<h3>Examples per party</h3>")
    parts.append(html_table(["Party", "Train", "Holdout", "Share of train"], rows))

    if (
        classes
        and len(classes) <= MAX_CLASS_COLUMNS
        and any(d.label_counts for d in parties.values())
    ):
        label_rows: list[tuple[str, Sequence[str]]] = [
            ("", [esc(p), *(fmt_count(d.label_counts.get(c)) for c in classes)])
            for p, d in parties.items()
        ]
        if several:
            sums = [sum(d.label_counts.get(c) or 0 for d in parties.values()) for c in classes]
            label_rows.append(("total", ["All parties", *(fmt_count(n) for n in sums)]))
        parts.append("<h3>Training examples per label</h3>")
        parts.append(html_table(["Party", *(esc(c) for c in classes)], label_rows))
    parts.append(
        html_figure(
            plots.label_distribution(r),
            "Training label counts per party",
            "Each label's share of a party's training rows, across parties: label skew."
            if _many(r)
            else "Training examples per party, stacked by label: shows size and label skew "
            "together.",
            "No label counts recorded.",
        )
    )
    parts.append("</section>")
    return "".join(parts)


def _config(r: Report) -> str:
    if r.config is None:
        body = "<p class='empty'>No job config recorded.</p>"
    else:
        try:
            text = json.dumps(r.config, indent=2, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = pprint.pformat(r.config, width=96)
        body = f"<pre>{esc(text)}</pre>"
    return f"<section id='config'><h2>Job config</h2>{body}</section>"


def render_report(metrics: Mapping[str, Any]) -> str:
    """The report for one job's metrics (the ``metrics.json`` dict) as HTML text."""
    r = load(metrics)
    sections = [
        _headline(r),
        _convergence(r),
        privacy_section(metrics),  # "" without DP
        privacy_audit_section(metrics),  # "" unless `fedsilo privacy audit` ran the job
        _final(r),
        importance_section(metrics),  # "" without importance
        _rounds(r),
        _data(r),
        _config(r),
    ]
    return render_page(
        "training.html.j2",
        title=f"{r.job_name} · fedsilo report",
        eyebrow="federated training report",
        heading=r.job_name,
        meta=_header_items(r),
        source="metrics.json",
        version=r.version,
        sections=[Markup(s) for s in sections],
    )
