"""Failure reasons in error messages: each distinct reason once, with who gave it and when."""

from __future__ import annotations

from fedsilo.runtime.failures import ROUND, failure_detail, natural, round_failures

REFUSAL = "fit: party reported: party '{}' refuses round 1: degree 2 is below its minimum 4"


def _refusals(*parties: str) -> dict[str, str]:
    return {p: REFUSAL.format(p) for p in parties}


def test_parties_refusing_alike_in_every_attempt_are_one_entry() -> None:
    names = [f"party-{i}" for i in range(1, 11)]
    attempt = {ROUND: "0 valid update(s), 5 needed (selection.min_parties)", **_refusals(*names)}

    text = round_failures([attempt, dict(attempt), dict(attempt)])

    quoted = ", ".join(f"'{p}'" for p in names)  # in numeric order: party-2 before party-10
    assert text == (
        "attempts 1-3: 0 valid update(s), 5 needed (selection.min_parties) | "
        f"10 parties ({quoted}) in attempts 1-3: "
        "fit: party reported: each party refuses round 1: degree 2 is below its minimum 4"
    )
    assert text.count("refuses round 1") == 1


def test_distinct_reasons_stay_distinct_and_a_lone_party_keeps_its_own_words() -> None:
    first = {
        ROUND: "1 valid update(s), 2 needed",
        "org-b": "fit: lost: no poll for 3.1 s",
        "org-c": "fit: lost: no poll for 3.2 s",
        "org-d": "party 'org-d' refuses round 2: its budget is spent",
    }
    later = {
        ROUND: "1 valid update(s), 2 needed",
        "org-b": "not connected",
        "org-c": "not connected",
    }

    text = round_failures([first, later, later])

    assert text.split(" | ") == [
        "attempts 1-3: 1 valid update(s), 2 needed",
        "party 'org-b' in attempt 1: fit: lost: no poll for 3.1 s",
        "party 'org-c' in attempt 1: fit: lost: no poll for 3.2 s",
        "party 'org-d' in attempt 1: party 'org-d' refuses round 2: its budget is spent",
        "2 parties ('org-b', 'org-c') in attempts 2-3: not connected",
    ]


def test_a_reason_from_different_parties_per_attempt_names_each_attempts_own() -> None:
    attempts = [_refusals("a", "b"), _refusals("c"), _refusals("a", "b")]

    text = round_failures(attempts)

    assert text == (
        "2 parties ('a', 'b') in attempts 1, 3; party 'c' in attempt 2: "
        "fit: party reported: each party refuses round 1: degree 2 is below its minimum 4"
    )


def test_an_attempt_without_failures_adds_nothing() -> None:
    assert round_failures([{}, {}]) == "no reason recorded"
    assert round_failures([{}, {ROUND: "timed out"}]) == "attempt 2: timed out"


def test_failure_detail_says_a_shared_reason_once() -> None:
    failures = {**_refusals("p10", "p2"), "p1": "no reply"}

    assert failure_detail(failures) == (
        "party 'p1': no reply; parties 'p2', 'p10': "
        "fit: party reported: each party refuses round 1: degree 2 is below its minimum 4"
    )


def test_natural_order_puts_numbers_in_numeric_order() -> None:
    names = ["party-10", "party-2", "party-1", "bank-b", "bank-a"]
    assert sorted(names, key=natural) == ["bank-a", "bank-b", "party-1", "party-2", "party-10"]
