from __future__ import annotations

import base64
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
