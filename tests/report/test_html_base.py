"""One page base: the training, vertical and analytics pages extend one Jinja2 template."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fedsilo
from fedsilo.analytics.output import to_html
from fedsilo.report import render_report
from fedsilo.report.html import html_table
from fedsilo.vertical.report import render_report as render_vertical
from tests.report.report_sample import make_metrics

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _vertical_doc() -> dict[str, Any]:
    return {
        "fedsilo_version": "0.1.0",
        "job": {"name": "bank_x_shop", "kind": "vertical", "seed": 7},
        "final": {"global": {"auc": 0.97, "ks": 0.9, "accuracy": 0.93, "f1": 0.94}},
        "baseline": None,
        "history": [{"epoch": 1, "taylor_loss": 0.6, "duration_s": 1.0}],
        "vertical": {"algorithm": "hetero_lr", "he_scheme": "ckks", "guest": "bank"},
    }


def _analytics_page(tmp_path: Path) -> str:
    job = {
        "kind": "analytics",
        "table": "cells",
        "data": {"dataset": "breast-cancer", "num_parties": 2},
        "columns": {"label": {"type": "category", "categories": ["malignant", "benign"]}},
        "privacy": {"mechanism": "none"},
        "policy": {"allow_exact": True},  # the simulated parties allow exact answers
    }
    answer = fedsilo.query(
        job, "SELECT label, COUNT(*) FROM cells GROUP BY label", ledger_dir=tmp_path
    )
    return to_html(answer)


def _parts(page: str) -> tuple[str, str, str]:
    head = page[: page.index("<body>")]
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    footer = re.search(r"<footer>(.*?)</footer>", page, re.S)
    assert style is not None and footer is not None
    return head, style.group(1), footer.group(1)


def test_three_pages_share_the_base_csp_and_style(tmp_path: Path) -> None:
    pages = {
        "training": render_report(make_metrics()),
        "vertical": render_vertical(_vertical_doc()),
        "analytics": _analytics_page(tmp_path),
    }
    styles = set()
    for name, page in pages.items():
        assert page.startswith("<!DOCTYPE html>"), name
        head, style, footer = _parts(page)
        assert f'http-equiv="Content-Security-Policy" content="{CSP}"' in head, name
        assert "<script" not in page.lower() and "<link" not in page.lower(), name
        assert "<p class='eyebrow'>fedsilo · " in page, name
        assert "Self-contained: no scripts, no external resources." in footer, name
        styles.add(style)
    assert len(styles) == 1  # one stylesheet: the pages look like one product
    assert "212" in pages["analytics"] and "357" in pages["analytics"]  # the answer's counts


def test_text_is_escaped_and_builder_html_is_not() -> None:
    table = html_table(["<b>head</b>"], [("", ["<i>cell</i>"])])
    assert "<b>head</b>" in table and "<i>cell</i>" in table  # builders pass their own HTML
    doc = _vertical_doc()
    doc["job"]["name"] = "<script>alert(1)</script>"
    doc["vertical"]["guest"] = "<img src=x>"
    page = render_vertical(doc)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x>" not in page
