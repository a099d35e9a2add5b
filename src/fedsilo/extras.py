"""Optional extras: which jobs need which, and the one error when one is missing.

``pip install fedsilo`` runs horizontal jobs (simulation and deployment) and the demo; DuckDB,
the one reader of every party's file (:mod:`fedsilo.data.typed`), is part of it. Other
kinds of work need an extra, installed with ``pip install 'fedsilo[NAME]'``:

=========== ============================================= =====================================
extra       modules                                       needed for
=========== ============================================= =====================================
vertical    private_set_intersection, phe, gmpy2, tenseal vertical jobs (PSI, hetero LR,
                                                          SecureBoost)
analytics   sqlglot                                       analytics jobs (``fedsilo query``)
ray         ray                                           ``fedsilo simulate --ray``
tracking    mlflow, tensorboard                           a job's ``[tracking]`` section
=========== ============================================= =====================================

Each entry point of such work calls :func:`require` before it imports the code that needs the
extra, so a missing extra is one line that says what to install (``MissingExtraError``, exit
status 2 on the command line), never an ``ImportError`` from deep inside.

>>> install_hint("ray")
"pip install 'fedsilo[ray]'"
"""

from __future__ import annotations

import importlib.util

from fedsilo.errors import MissingExtraError

EXTRAS: dict[str, tuple[str, ...]] = {
    "vertical": ("private_set_intersection", "phe", "gmpy2", "tenseal"),
    "analytics": ("sqlglot",),
    "ray": ("ray",),
    "tracking": ("mlflow", "tensorboard"),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (none when it is installed)."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def install_hint(extra: str) -> str:
    return f"pip install 'fedsilo[{extra}]'"


def require(extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtraError` naming the pip command if ``extra`` is not installed."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(
            f"{needed_for} needs the {extra!r} extra (module {absent[0]!r} is not installed): "
            f"{install_hint(extra)}"
        )
