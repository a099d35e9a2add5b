from __future__ import annotations

import base64
import re
import struct
from typing import Any

from fedsilo.report import plots
from fedsilo.report._model import load

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/png;base64,")
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    return width, height


def test_each_figure_is_a_png(metrics: dict[str, Any]) -> None:
    report = load(metrics)
    for make in (plots.convergence, plots.party_bars, plots.label_distribution):
        uri = make(report)
        assert uri is not None
        width, height = _png_size(uri)
        assert width == 10 * plots.DPI
        assert height > 300


def test_figures_are_skipped_without_data() -> None:
    report = load({})
    assert plots.convergence(report) is None
    assert plots.party_bars(report) is None
    assert plots.label_distribution(report) is None


def test_convergence_with_only_accuracy(metrics: dict[str, Any]) -> None:
    for r in metrics["history"]:
        r["global"] = {"accuracy": r["global"]["accuracy"]}
        r["parties"] = {}
    assert plots.convergence(load(metrics)) is not None


def test_label_text_is_safe_for_mathtext() -> None:
    assert plots.label_text("cost $5") == r"cost \$5"
    long = plots.label_text("x" * 100)
    assert len(long) == plots.MAX_LABEL_CHARS and long.endswith("…")


def test_palette_sizes() -> None:
    for n in (1, 3, 10, 11, 20, 21, 60):
        colors = plots.palette(n)
        assert len(colors) == n
        assert len(set(colors)) == n


def test_many_parties_are_drawn_as_distributions_not_one_line_each() -> None:
    """What keeps a 1,000-party report fast: past MAX_DRAWN_PARTIES the figures draw a band,
    so they are the same at 30 and 1,000 parties (no timing here: rule 6, timings live in
    bench/)."""
    from fedsilo.report.page import render_report
    from tests.report.report_sample import make_many_metrics

    smaller = render_report(make_many_metrics(plots.MAX_DRAWN_PARTIES + 10))
    page = render_report(make_many_metrics(1000))
    assert "median and 10-90 % band" in page and "across parties" in page
    # the figures no longer grow with the parties: the same sizes at 30 and 1,000 parties
    sizes = [
        [_png_size(uri) for uri in re.findall(r"data:image/png;base64,[^'\"]+", html)]
        for html in (smaller, page)
    ]
    assert len(sizes[1]) == 3 and sizes[0] == sizes[1]
