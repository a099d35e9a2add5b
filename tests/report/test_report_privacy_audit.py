"""The report's "Empirical privacy audit" section, from a metrics dict (no training)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsilo.privacy.one_run import audit_scores
from fedsilo.report import render_report
from fedsilo.report.privacy_audit import privacy_audit_section
from tests.report.report_sample import make_metrics

EVIL = "<script>alert(1)</script>"


def audit_metrics(accountant: float | None, shift: float) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    included = rng.random(200) < 0.5
    scores = included * shift + rng.normal(0, 1, 200)
    test = audit_scores(scores, included, delta=1e-5)
    return {
        "party": EVIL,
        "seed": 0,
        **test.to_json(),
        "accountant_epsilon": accountant,
        "consistent": accountant is None or test.epsilon_lower_bound <= accountant,
        "canary_scores": scores.tolist(),
        "canary_included": included.tolist(),
    }


def test_no_section_without_an_audit() -> None:
    metrics = make_metrics()
    assert privacy_audit_section(metrics) == ""
    assert "privacy-audit" not in render_report(metrics)


def test_section_shows_the_numbers_a_plot_and_escapes_the_party() -> None:
    metrics = {**make_metrics(), "privacy_audit": audit_metrics(8.0, 0.3)}
    page = render_report(metrics)
    audit = metrics["privacy_audit"]
    assert "<h2>Empirical privacy audit</h2>" in page
    assert f"{audit['auc']:.3f}" in page and "8.000" in page
    assert f"{audit['epsilon_lower_bound']:.3f}" in page
    assert EVIL not in page and "&lt;script&gt;" in page
    section = privacy_audit_section(metrics)
    assert section.count("data:image/png;base64,") == 1
    assert "at or below the accountant" in section


def test_a_bound_above_the_accountants_epsilon_is_flagged() -> None:
    metrics = {**make_metrics(), "privacy_audit": audit_metrics(0.1, 3.0)}
    assert metrics["privacy_audit"]["consistent"] is False
    assert "class='warn'" in privacy_audit_section(metrics)


def test_malformed_scores_drop_the_plot_not_the_section() -> None:
    audit = {**audit_metrics(None, 1.0), "canary_scores": ["x"] * 200}
    section = privacy_audit_section({"privacy_audit": audit})
    assert "Empirical privacy audit" in section and "data:image/png" not in section
    assert "No DP" in section
