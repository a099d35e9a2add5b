"""The CLI summary's feature-importance table (``fedsilo simulate``, horizontal and vertical):
each total shown as what it is, under a heading that says so."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from fedsilo.cli.simulate import importance_table


def _heading(text: str) -> str:
    return next(line for line in text.splitlines() if "party" in line and "features" in line)


def _render(importance: dict[str, Any]) -> str:
    table = importance_table(importance)
    assert table is not None
    console = Console(width=240, record=True, file=None, force_terminal=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def test_a_sum_of_absolute_coefficients_is_shown_unsigned_under_its_name() -> None:
    importance = {
        "bank": {
            "role": "guest",
            "features": 2,
            "total": {"coefficient": 0.88},
            "by_feature": {"age": {"coefficient": -0.58}, "balance": {"coefficient": 0.3}},
        },
        "provider": {"role": "host", "features": 3, "total": {"coefficient": 1.25}},
    }

    text = _render(importance)

    assert "sum of |coef|" in _heading(text) and "total" not in _heading(text)
    assert "0.880" in text and "1.250" in text
    assert "+0.880" not in text and "coef 0.880" not in text and "+1.250" not in text
    assert "age (coef -0.580); balance (coef +0.300)" in text  # a feature keeps its sign
    assert "names not shared" in text


def test_secureboost_totals_are_splits_and_gain() -> None:
    importance = {
        "bank": {
            "features": 2,
            "total": {"splits": 3, "gain": 4.5},
            "by_feature": {"age": {"splits": 3, "gain": 4.5}, "balance": {"splits": 0, "gain": 0}},
        },
    }

    text = _render(importance)

    assert "splits, total gain" in _heading(text) and "3 splits, gain 4.5" in text
    assert "age (3 splits, gain 4.5)" in text and "balance (" not in text  # unused: not listed


def test_a_permuted_log_loss_change_is_signed_once() -> None:
    importance = {
        "global": {
            "features": 2,
            "total": {"accuracy_drop": 0.2, "loss_increase": 0.118},
            "by_feature": {
                "signal": {"accuracy_drop": 0.2, "loss_increase": 0.12},
                "noise": {"accuracy_drop": 0.0, "loss_increase": -0.002},
            },
        },
    }

    text = _render(importance)

    assert "sum of log-loss rises (permuted)" in _heading(text) and "+0.118" in text
    assert "signal (log loss +0.12 permuted)" in text
    assert "noise (log loss -0.002 permuted)" in text and "+-" not in text
