"""Number formatting and HTML escaping shared by the page builder."""

from __future__ import annotations

import html
from typing import Any

MISSING = "—"


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too, so the result is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt_metric(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def fmt_count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def fmt_ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}×"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds >= 1 else f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def ratio(federated: float | None, centralized: float | None) -> float | None:
    if federated is None or centralized is None or centralized == 0:
        return None
    return federated / centralized
