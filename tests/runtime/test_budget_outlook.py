"""Before round 1 of a simulation, a party whose privacy budget will run out is named (with
its budget, the epsilon the plan takes it to and the round it refuses from), and a job its
budgets would certainly stop is refused before any party trains."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fedsilo.errors import BudgetExhaustedError
from fedsilo.runtime.coordinator import RoundRecord
from fedsilo.simulation import Progress, simulate
from tests.conftest import small_job

ROUNDS = 4
OUTLOOK = "fedsilo.runtime.budget_outlook"


def _job(budget: dict[str, Any], **selection: Any) -> dict[str, Any]:
    return small_job(
        rounds=ROUNDS,
        training={"batch_size": 16},
        selection={"min_parties": 2, **selection},
        privacy={
            "delta": 1e-5,
            "record_dp": {"enabled": True, "noise_multiplier": 1.0},
            "budget": budget,
        },
    )


@pytest.fixture(scope="module")
def spent() -> dict[str, dict[int, float]]:
    """Each party's epsilon after each round, without budgets."""
    history = simulate(_job({})).history
    return {
        p: {r.round: r.privacy["parties"][p]["epsilon"] for r in history}
        for p in history[0].privacy["parties"]
    }


class Seen:
    """What a person watching the run saw, in order: warnings and rounds."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def progress(self) -> Progress:
        def on_round(record: RoundRecord) -> None:
            self.events.append(f"round {record.round}")

        return Progress(on_round=on_round, on_warning=self.events.append)

    @property
    def rounds(self) -> list[str]:
        return [e for e in self.events if e.startswith("round ")]


def _fits(audit_dir: Path) -> int:
    lines = [json.loads(x) for f in audit_dir.glob("*.jsonl") for x in f.read_text().splitlines()]
    return sum(e.get("kind") == "fit" for e in lines)


def test_a_budget_that_will_run_out_is_named_before_round_1_with_the_round_it_refuses(
    spent: dict[str, dict[int, float]], caplog: pytest.LogCaptureFixture
) -> None:
    budget = (spent["party-2"][2] + spent["party-2"][3]) / 2  # two rounds, not three
    seen = Seen()

    with caplog.at_level(logging.WARNING):
        result = simulate(
            _job({"parties": {"party-2": budget}, "on_exhausted": "continue"}),
            progress=seen.progress(),
        )

    warning = seen.events[0]
    assert seen.events[1:] == [f"round {r}" for r in range(1, ROUNDS + 1)]
    assert warning.startswith(
        f"party 'party-2': its privacy budget, epsilon {budget:g} at delta 1e-05, runs out at "
        f"round 3 of 4: the job's plan takes it to epsilon {spent['party-2'][4]:.4g} (noise "
        "multiplier 1, sample rate "
    )
    assert "so it will refuse to train from round 3 on." in warning
    assert warning.endswith(
        'Raise its privacy.budget.parties."party-2" or privacy.record_dp.noise_multiplier, '
        "or run at most 2 rounds"
    )
    logged = [r.getMessage() for r in caplog.records if r.name == OUTLOOK]
    assert logged == [warning]
    # as foretold: party-2 trains in rounds 1 and 2 and refuses from round 3
    assert [r.round for r in result.history if "party-2" in r.participants] == [1, 2]
    assert "refuses round 3" in result.history[2].failures["party-2"]


def test_under_stop_a_budget_that_will_run_out_refuses_the_job_before_anyone_trains(
    spent: dict[str, dict[int, float]], tmp_path: Path
) -> None:
    budget = (spent["party-2"][2] + spent["party-2"][3]) / 2
    seen = Seen()

    with pytest.raises(BudgetExhaustedError) as err:
        simulate(
            _job({"parties": {"party-2": budget}, "on_exhausted": "stop"}),
            progress=seen.progress(),
            audit_dir=tmp_path,
        )

    text = str(err.value)
    assert text.startswith(
        "the job is refused before training: party 'party-2' would refuse round 3 of 4 for its "
        "privacy budget, and the job stops at the first such refusal (privacy.budget."
        "on_exhausted = \"stop\"). party 'party-2': its privacy budget, epsilon "
        f"{budget:g} at delta 1e-05, runs out at round 3 of 4: the job's plan takes it to "
        f"epsilon {spent['party-2'][4]:.4g} (noise multiplier 1, "
    )
    assert text.endswith('or set on_exhausted = "continue" to go on without it')
    assert seen.events == []  # no round, no warning: the error says it
    assert _fits(tmp_path) == 0  # no party was asked to train: nothing spent


def test_under_continue_budgets_leaving_too_few_parties_refuse_the_job_before_training(
    spent: dict[str, dict[int, float]], tmp_path: Path
) -> None:
    low = min(spent[p][1] for p in spent) / 2  # no party can afford a round
    seen = Seen()

    with pytest.raises(BudgetExhaustedError) as err:
        simulate(
            _job({"max_epsilon": low, "on_exhausted": "continue"}),
            progress=seen.progress(),
            audit_dir=tmp_path,
        )

    text = str(err.value)
    assert text.startswith(
        "the job is refused before training: from round 1 of 4, parties 'party-1', 'party-2' "
        "and 'party-3' would refuse to train for their privacy budget, which leaves 0 parties "
        "that could train, fewer than selection.min_parties = 2: the job would stop there. "
    )
    # party-1 and party-2 hold as many rows: the same plan, said once (failure_detail)
    same = f"its privacy budget, epsilon {low:g} at delta 1e-05, runs out at round 1 of 4: "
    assert f"parties 'party-1', 'party-2': {same}" in text
    assert f"party 'party-3': {same}" in text
    assert text.count("so it will refuse every round") == 2
    assert text.endswith(
        "Raise their max_epsilon (privacy.budget) or privacy.record_dp.noise_multiplier, or run "
        "fewer rounds"
    )
    assert seen.events == [] and _fits(tmp_path) == 0


def test_under_continue_one_party_out_of_budget_leaving_enough_is_only_warned_of(
    spent: dict[str, dict[int, float]],
) -> None:
    low = spent["party-3"][1] / 2
    seen = Seen()

    result = simulate(
        _job({"parties": {"party-3": low}, "on_exhausted": "continue"}),
        progress=seen.progress(),
    )

    assert seen.events[0].startswith("party 'party-3': its privacy budget, epsilon ")
    assert "runs out at round 1 of 4" in seen.events[0]
    assert "so it will refuse every round." in seen.events[0]
    assert "run at most" not in seen.events[0]
    assert seen.rounds == [f"round {r}" for r in range(1, ROUNDS + 1)]
    assert all(r.participants == ["party-1", "party-2"] for r in result.history)


def test_with_parties_sampled_a_budget_is_warned_of_in_rounds_of_training_never_refused(
    spent: dict[str, dict[int, float]],
) -> None:
    budget = (spent["party-2"][2] + spent["party-2"][3]) / 2
    seen = Seen()

    try:  # 2 of the 3 parties a round: party-2 may or may not be selected a third time
        simulate(
            _job({"parties": {"party-2": budget}, "on_exhausted": "stop"}, fraction=0.5),
            progress=seen.progress(),
        )
    except BudgetExhaustedError as exc:
        assert "refused before training" not in str(exc)

    assert seen.events[0].startswith(
        f"party 'party-2': its privacy budget, epsilon {budget:g} at delta 1e-05, affords 2 of "
        "the job's 4 rounds: if it trains in all of them the job's plan takes it to epsilon "
        f"{spent['party-2'][4]:.4g} ("
    )
    assert "so it will refuse to train once it has trained in 2." in seen.events[0]
    assert seen.rounds[:2] == ["round 1", "round 2"]


def test_budgets_that_last_the_job_say_nothing(
    spent: dict[str, dict[int, float]], caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    with caplog.at_level(logging.WARNING):
        simulate(_job({"max_epsilon": spent["party-1"][ROUNDS] * 1.5}), progress=seen.progress())
    assert seen.events == [f"round {r}" for r in range(1, ROUNDS + 1)]
    assert not [r for r in caplog.records if r.name == OUTLOOK]
