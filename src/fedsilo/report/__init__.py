"""A self-contained HTML report of a federated training job.

``render_report(metrics)`` turns a job's ``metrics.json`` dict (see :mod:`fedsilo.results`)
into one HTML document: inline CSS, plots as embedded PNG ``data:`` URIs, no scripts and no
external resources, so the file can be mailed, archived or opened offline. ``write_report``
writes it to disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedsilo.report.page import render_report

__all__ = ["render_report", "write_report"]


def write_report(metrics: Mapping[str, Any], path: Path | str) -> Path:
    """Render the report and write it to ``path`` (parent folders are created); return it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(metrics), encoding="utf-8")
    return out
