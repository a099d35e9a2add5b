"""Vertical (cross-industry) federated learning: parties hold different columns
of shared customers. :mod:`fedsilo.vertical.psi` aligns their rows privately."""

from fedsilo.vertical.ids import DuplicatePolicy, IdNormalization, normalize_id, normalize_ids
from fedsilo.vertical.psi import (
    AlignedRows,
    PsiClient,
    PsiDataStructure,
    PsiServer,
    RevealTo,
    align_in_process,
    alignment_report,
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
