"""Align a bank's and a retailer's customers without revealing the others.

The first step of vertical (cross-industry) learning: private set intersection over
normalized customer IDs (openmined-psi). Each side learns which of its own rows are shared,
in one agreed order, and nothing about the other side's customers outside the intersection.
Run: .venv/bin/python examples/psi_align.py
"""

from __future__ import annotations

from fedsilo.vertical import RevealTo, align_in_process, alignment_report


def main() -> None:
    bank = ["C-001", "c-002", " C-003 ", "C-004", "C-005", 1007]
    retailer = ["C-002", "C-003", "C-005", "C-009", "1007.0", "C-010", "C-011"]
    bank_rows, retailer_rows = align_in_process(bank, retailer, reveal=RevealTo.BOTH)
    print(alignment_report(bank_rows, retailer_rows))
    for k, (b, r) in enumerate(zip(bank_rows.indices, retailer_rows.indices, strict=True)):
        print(f"aligned row {k}: bank row {b} ({bank[b]!r}) = retailer row {r} ({retailer[r]!r})")


if __name__ == "__main__":
    main()
