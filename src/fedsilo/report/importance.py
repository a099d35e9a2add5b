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


COLUMNS = {
    "coefficient": "Coefficient (std.)",
    "splits": "Splits",
    "gain": "Total gain",
    "accuracy_drop": "Accuracy drop (permuted)",
    "loss_increase": "Log-loss rise (permuted)",
}


def _value(entry: Mapping[str, Any]) -> float:
    """The ranking key: |coefficient|, total gain or the log-loss rise when permuted."""
    coef = as_number(entry.get("coefficient"))
    if coef is not None:
        return abs(coef)
    return as_number(entry.get("gain")) or as_number(entry.get("loss_increase")) or 0.0


def _cells(entry: Mapping[str, Any], keys: list[str]) -> list[str]:
    cells = []
    for key in keys:
        value = entry.get(key)
        cells.append(
            fmt_count(as_count(value)) if key == "splits" else fmt_metric(as_number(value))
        )
    return cells


def _keys(scopes: Mapping[str, Any]) -> list[str]:
    """The measures any scope reports, in :data:`COLUMNS` order."""
    seen: set[str] = set()
    for raw in scopes.values():
        entry = as_mapping(raw)
        seen |= set(as_mapping(entry.get("total")))
        for e in as_mapping(entry.get("by_feature")).values():
            seen |= set(as_mapping(e))
    return [k for k in COLUMNS if k in seen]


def importance_section(doc: Mapping[str, Any]) -> str:
    """``<section id='importance'>`` or an empty string when the run has no importance."""
    scopes = as_mapping(doc.get("importance"))
    if not scopes:
        return ""
    keys = _keys(scopes)
    head = [COLUMNS[k] for k in keys]
    rows = []
    ranked = []
    for scope, raw in scopes.items():
        entry = as_mapping(raw)
        names = as_mapping(entry.get("by_feature"))
        shown = "by name" if names else "totals only (names not shared)"
        total = as_mapping(entry.get("total"))
        role = str(entry.get("role") or MISSING)
        features = fmt_count(as_count(entry.get("features")))
        rows.append(("", [esc(scope), esc(role), features, esc(shown), *_cells(total, keys)]))
        if names:
            top = sorted(names.items(), key=lambda kv: -_value(as_mapping(kv[1])))[:TOP]
            body = [("", [esc(n), *_cells(as_mapping(e), keys)]) for n, e in top]
            table = html_table(["Feature", *head], body, text_columns=frozenset({0}))
            ranked.append(f"<h3>{esc(scope)}: top {len(top)} features</h3>{table}")
    summary = html_table(
        ["Party", "Role", "Features", "Shown", *head],
        rows,
        text_columns=frozenset({1, 3}),
    )
    note = (
        "<p class='note'>Standardized coefficients (change in log-odds per standard deviation; "
        "a party's total is the sum of absolute values), split count and total gain per "
        "feature, or (neural models) the accuracy drop and log-loss rise on the central test "
        "split when the column is shuffled. A vertical party's feature names appear only if its "
        "own configuration shares them (share_feature_names); otherwise only its totals do.</p>"
    )
    return (
        "<section id='importance'><h2>Feature importance</h2>"
        f"{summary}{note}{''.join(ranked)}</section>"
    )
