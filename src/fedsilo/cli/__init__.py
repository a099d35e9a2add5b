"""The command line: the only package that imports Typer or Rich.

``fedsilo.cli.app`` is the root Typer app (entry point ``fedsilo = fedsilo.cli:main``);
``python -m fedsilo.cli`` runs it too.
"""

from __future__ import annotations

from fedsilo.cli.app import app, main

__all__ = ["app", "main"]
