from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "psi_align.py"


def test_psi_example_aligns_the_four_shared_customers(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "'num_aligned': 4" in out
    assert "bank row 5 (1007) = retailer row 4 ('1007.0')" in out
    assert "C-001" not in out and "C-009" not in out  # non-shared IDs are never printed
