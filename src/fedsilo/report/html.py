"""One HTML page base for every fedsilo page: Jinja2 templates with autoescape.

``templates/base.html.j2`` is the page (inline CSS from ``style.css``, the
Content-Security-Policy, header, footer); ``training.html.j2``, ``vertical.html.j2`` and
``analytics.html.j2`` extend it; ``macros.html.j2`` holds the blocks they share (meta list,
card, figure, table), which Python code reaches through :func:`html_meta`, :func:`html_card`,
:func:`html_figure` and :func:`html_table`. Autoescape is on: a plain ``str`` from a document
(job, party, column names, failure messages) is escaped wherever it lands; HTML a builder made
itself travels as :class:`markupsafe.Markup`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from fedsilo.report._fmt import esc

__all__ = [
    "Markup",
    "html_card",
    "html_figure",
    "html_meta",
    "html_table",
    "render_page",
]


def _escape_text(value: Any) -> Any:
    # Every plain string a template prints is escaped by the one escaper the section builders
    # use (fedsilo.report._fmt.esc), so an entity looks the same wherever it is printed.
    if isinstance(value, str) and not isinstance(value, Markup):
        return Markup(esc(value))
    return value


@functools.cache
def environment() -> Environment:
    """The templates of ``fedsilo/report/templates`` (autoescaped; built once)."""
    return Environment(
        loader=PackageLoader("fedsilo.report", "templates"),
        autoescape=select_autoescape(("html", "j2"), default_for_string=True, default=True),
        finalize=_escape_text,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_page(
    template: str,
    *,
    title: str,
    eyebrow: str,
    heading: str,
    meta: Iterable[tuple[str, str]],
    source: str,
    version: str | None = None,
    **context: Any,
) -> str:
    """A whole page from one child of ``base.html.j2``."""
    page = (
        environment()
        .get_template(template)
        .render(
            title=title,
            eyebrow=eyebrow,
            heading=heading,
            meta=list(meta),
            source=source,
            version=version,
            **context,
        )
    )
    return page.lstrip()


def _macros() -> Any:
    return environment().get_template("macros.html.j2").module


def html_table(
    head: Sequence[str],
    rows: Iterable[tuple[str, Sequence[str]]],
    *,
    text_columns: frozenset[int] = frozenset(),
) -> Markup:
    """A table; ``head`` and cells are already-escaped HTML, each row has a CSS class."""
    return Markup(
        _macros().table(
            [Markup(h) for h in head],
            [(cls, [Markup(c) for c in cells]) for cls, cells in rows],
            text_columns=tuple(text_columns),
        )
    )


def html_figure(uri: str | None, alt: str, caption: str, empty: str) -> Markup:
    """An inline PNG with its caption, or the ``empty`` note when there is no figure."""
    return Markup(_macros().figure(uri, alt, caption, empty))


def html_meta(items: Iterable[tuple[str, str]]) -> Markup:
    """A ``<dl>`` of plain-text key/value pairs."""
    return Markup(_macros().meta(list(items)))


def html_card(label: str, value: str, sub: str = "") -> Markup:
    """A headline number with its label and a note under it (plain text)."""
    return Markup(_macros().card(label, value, sub))
