"""The report's "Empirical privacy audit" section (``metrics["privacy_audit"]``).

Written by ``fedsilo privacy audit`` (:mod:`fedsilo.privacy_audit`): the membership test on
label-flipped canaries and the one-run epsilon lower bound beside the accountant's epsilon.
An empty string when the job was not an audit, so other reports look as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedsilo.report._fmt import MISSING, esc
from fedsilo.report._model import as_list, as_mapping, as_number
from fedsilo.report.html import html_card, html_figure, html_table
from fedsilo.report.plots import GLOBAL_COLOR, new_figure, style_axes, to_data_uri

IN_COLOR = "#c0392b"
OUT_COLOR = "#2e86c1"


def _fmt(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def audit_plot(audit: Mapping[str, Any]) -> str | None:
    """Canary scores of included vs left-out canaries, and the attack's ROC curve (log axes)."""
    scores = [as_number(s) for s in as_list(audit.get("canary_scores"))]
    included = [x is True for x in as_list(audit.get("canary_included"))]
    if not scores or len(scores) != len(included) or any(s is None for s in scores):
        return None
    s = np.array(scores, dtype=np.float64)
    inc = np.array(included, dtype=bool)
    if inc.all() or not inc.any():
        return None
    fig = new_figure(8.0, 3.2)
    hist, roc = fig.subplots(1, 2)
    bins = np.histogram_bin_edges(s, bins=30)
    hist.hist(s[inc], bins=bins, alpha=0.6, color=IN_COLOR, label="trained on (coin: in)")
    hist.hist(s[~inc], bins=bins, alpha=0.6, color=OUT_COLOR, label="left out (coin: out)")
    hist.set_xlabel("score: log-probability of the canary's wrong label", fontsize=8)
    hist.set_ylabel("canaries", fontsize=8)
    hist.legend(fontsize=7, frameon=False)
    style_axes(hist)
    from sklearn.metrics import roc_curve  # scikit-learn costs ~1 s of import; audits only

    fpr, tpr, _ = roc_curve(inc, s)
    floor = 1.0 / max(1, int((~inc).sum()))
    roc.plot(np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2), color=GLOBAL_COLOR, lw=1.8)
    roc.plot([floor / 2, 1], [floor / 2, 1], color="#999999", lw=1, ls="--", label="chance")
    roc.set_xscale("log")
    roc.set_yscale("log")
    roc.set_xlabel("false-positive rate", fontsize=8)
    roc.set_ylabel("true-positive rate", fontsize=8)
    roc.legend(fontsize=7, frameon=False, loc="lower right")
    style_axes(roc)
    return to_data_uri(fig)


def privacy_audit_section(metrics: Mapping[str, Any]) -> str:
    """HTML for the audit section, or ``""`` when ``metrics`` has no ``privacy_audit``."""
    audit = as_mapping(metrics.get("privacy_audit"))
    if not audit:
        return ""
    bound, acct = (
        as_number(audit.get("epsilon_lower_bound")),
        as_number(audit.get("accountant_epsilon")),
    )
    confidence, low_fpr = as_number(audit.get("confidence")), as_number(audit.get("low_fpr"))
    conf_text = MISSING if confidence is None else f"{100 * confidence:g}%"
    fpr_text = MISSING if low_fpr is None else f"{100 * low_fpr:g}%"
    cards = [
        ("Canary AUC", _fmt(as_number(audit.get("auc"))), "0.5 = the attack guesses"),
        (f"TPR at {fpr_text} FPR", _fmt(as_number(audit.get("tpr_at_low_fpr"))), ""),
        (f"Epsilon lower bound ({conf_text})", _fmt(bound), f"delta {audit.get('delta')}"),
        ("Accountant's epsilon", "∞ (no DP)" if acct is None else _fmt(acct), "same party"),
    ]
    card_html = "".join(html_card(label, value, sub) for label, value, sub in cards)
    party = esc(audit.get("party", MISSING))
    intro = (
        f"<p>{esc(audit.get('canaries'))} of party <strong>{party}</strong>'s rows became "
        f"canaries with a wrong label; a secret coin (seed {esc(audit.get('seed'))}) included "
        f"{esc(audit.get('included'))} of them in its training. After one run, the final model's "
        "log-probability of each canary's wrong label guesses which were trained on. The lower "
        "bound (Steinke, Nasr &amp; Jagielski 2023, one-run audit) holds at the stated "
        "confidence: the training run is not (epsilon, delta)-DP for any smaller epsilon.</p>"
    )
    if audit.get("consistent") is False:
        verdict = (
            "<p class='warn'>The empirical lower bound exceeds the accountant's epsilon: the "
            "training leaks more than it accounts for (or, with probability at most "
            f"{esc(_fmt(None if confidence is None else 1 - confidence, 2))}, chance).</p>"
        )
    elif acct is None:
        verdict = "<p class='note'>No DP: nothing bounds what the model reveals.</p>"
    else:
        verdict = (
            "<p class='note'>The empirical lower bound is at or below the accountant's epsilon, "
            "as it must be for a correct implementation. The gap measures this attack with "
            "these canaries, not the true leakage.</p>"
        )
    figure = html_figure(
        audit_plot(audit),
        "Canary scores and ROC curve",
        "Left: scores of trained-on and left-out canaries. Right: the membership test's ROC "
        "curve (log axes; the dashed line is chance).",
        "No canary scores recorded.",
    )
    rows = [
        (
            "",
            [
                esc(g.get("guesses")),
                esc(g.get("correct")),
                esc(_fmt(as_number(g.get("epsilon")))),
            ],
        )
        for g in (as_mapping(x) for x in as_list(audit.get("grid")))
    ]
    table = html_table(["guesses", "correct", "epsilon lower bound"], rows)
    grid = (
        "<h3>Guesses tried</h3><p class='note'>Each row guesses the highest half of its "
        "guesses 'in' and the lowest half 'out'; the grid is fixed before the scores are seen "
        f"and the confidence is split over its rows (Bonferroni).</p>{table}"
    )
    return (
        "<section id='privacy-audit'><h2>Empirical privacy audit</h2>"
        f"<div class='cards'>{card_html}</div>{intro}{verdict}{figure}{grid}</section>"
    )
