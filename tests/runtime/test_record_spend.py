"""The coordinator's side of record-level DP: what it says when parties' budgets are spent."""

from __future__ import annotations

from fedsilo.runtime.record_spend import spent_budgets

REFUSAL = (
    "party '{}' refuses round 3: its privacy budget is epsilon 2.5 (delta 1e-05) and this "
    "round would bring its spend from 2.4769 to 2.5698. Raise the party's max_epsilon, run "
    "fewer rounds, or add more noise"
)


def test_identical_refusals_are_said_once_with_every_party_that_gave_them() -> None:
    refusals = {p: REFUSAL.format(p) for p in ("party-1", "party-2", "party-10")}

    text = str(spent_budgets(3, refusals, [], need=2))

    assert text.startswith(
        "round 3: the job stops: parties 'party-1', 'party-2' and 'party-10' have spent their "
        "privacy budget"
    )
    assert text.count("refuses round 3") == 1
    assert text.endswith(
        "The parties said: parties 'party-1', 'party-2', 'party-10': each party refuses round 3: "
        "its privacy budget is epsilon 2.5 (delta 1e-05) and this round would bring its spend "
        "from 2.4769 to 2.5698. Raise the party's max_epsilon, run fewer rounds, or add more noise"
    )


def test_distinct_refusals_stay_distinct_each_with_its_party() -> None:
    refusals = {
        "party-1": REFUSAL.format("party-1"),
        "party-2": REFUSAL.format("party-2").replace("2.4769", "2.3000"),
        "party-3": REFUSAL.format("party-3"),
    }

    text = str(spent_budgets(3, refusals, [], need=2))

    said = text.split("The parties said: ")[1]
    assert said == (
        "parties 'party-1', 'party-3': "
        + REFUSAL.replace("party '{}'", "each party")
        + "; party 'party-2': "
        + refusals["party-2"]
    )
