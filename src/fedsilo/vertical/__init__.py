"""Vertical (cross-industry) federated learning: parties hold different columns
of shared customers. :mod:`fedsilo.vertical.psi` aligns their rows privately.

The PSI names below load on first use: :mod:`fedsilo.vertical.config` (read for every job
file) must not need the ``vertical`` extra (openmined-psi, phe, gmpy2, tenseal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedsilo.vertical.ids import DuplicatePolicy, IdNormalization, normalize_id, normalize_ids

if TYPE_CHECKING:
    from fedsilo.vertical.psi import (
        AlignedRows,
        PsiClient,
        PsiDataStructure,
        PsiServer,
        RevealTo,
        align_in_process,
        alignment_report,
    )

_PSI = (
    "AlignedRows",
    "PsiClient",
    "PsiDataStructure",
    "PsiServer",
    "RevealTo",
    "align_in_process",
    "alignment_report",
)

__all__ = [
    "AlignedRows",
    "DuplicatePolicy",
    "IdNormalization",
    "PsiClient",
    "PsiDataStructure",
    "PsiServer",
    "RevealTo",
    "align_in_process",
    "alignment_report",
    "normalize_id",
    "normalize_ids",
]


def __getattr__(name: str) -> Any:
    if name in _PSI:
        from fedsilo.vertical import psi

        return getattr(psi, name)
    raise AttributeError(f"module 'fedsilo.vertical' has no attribute {name!r}")
