"""The report's feature-importance section, from ``metrics.json["importance"]``.

One section for every kind (:mod:`fedsilo.result_doc`): per scope (a vertical party, or
``global`` for a horizontal model) its total and, where the names were shared, the features
ranked by absolute coefficient or by total gain. A party that did not share its names shows
only its total: this page never holds a name that is not in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsilo.report._fmt import MISSING, esc, fmt_count, fmt_metric
from fedsilo.report._model import as_count, as_mapping, as_number
from fedsilo.report.html import html_table

TOP = 15


def _value(entry: Mapping[str, Any]) -> float:
    """The ranking key: |coefficient| (linear models) or total gain (trees)."""
    coef = as_number(entry.get("coefficient"))
    if coef is not None:
        return abs(coef)
    return as_number(entry.get("gain")) or 0.0


def _cells(entry: Mapping[str, Any]) -> list[str]:
    return [
        fmt_metric(as_number(entry.get("coefficient"))),
        fmt_count(as_count(entry.get("splits"))),
        fmt_metric(as_number(entry.get("gain"))),
    ]


HEAD = ["Coefficient (std.)", "Splits", "Total gain"]


def importance_section(doc: Mapping[str, Any]) -> str:
    """``<section id='importance'>`` or an empty string when the run has no importance."""
    scopes = as_mapping(doc.get("importance"))
    if not scopes:
        return ""
    rows = []
    ranked = []
    for scope, raw in scopes.items():
        entry = as_mapping(raw)
        names = as_mapping(entry.get("by_feature"))
        shown = "by name" if names else "totals only (names not shared)"
        total = as_mapping(entry.get("total"))
        role = str(entry.get("role") or MISSING)
        features = fmt_count(as_count(entry.get("features")))
        rows.append(("", [esc(scope), esc(role), features, esc(shown), *_cells(total)]))
        if names:
            top = sorted(names.items(), key=lambda kv: -_value(as_mapping(kv[1])))[:TOP]
            body = [("", [esc(n), *_cells(as_mapping(e))]) for n, e in top]
            table = html_table(["Feature", *HEAD], body, text_columns=frozenset({0}))
            ranked.append(f"<h3>{esc(scope)}: top {len(top)} features</h3>{table}")
    summary = html_table(
        ["Party", "Role", "Features", "Shown", *HEAD],
        rows,
        text_columns=frozenset({1, 3}),
    )
    note = (
        "<p class='note'>Standardized coefficients (change in log-odds per standard deviation; "
        "a party's total is the sum of absolute values) or split count and total gain per "
        "feature. A party's feature names appear only if its own configuration shares them "
        "(share_feature_names); otherwise only its totals do.</p>"
    )
    return (
        "<section id='importance'><h2>Feature importance</h2>"
        f"{summary}{note}{''.join(ranked)}</section>"
    )
