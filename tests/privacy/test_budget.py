"""Budgets: a party refuses a round that would exceed its epsilon, and never forgets spend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedsilo.errors import AuditError, BudgetExhaustedError
from fedsilo.privacy.dp_sgd import round_spend
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.simulation import simulate
from fedsilo.training import LocalTrainConfig
from tests.conftest import small_job

PROPOSAL = {
    "noise_multiplier": 1.0,
    "target_epsilon": None,
    "max_grad_norm": 1.0,
    "accounting": "rdp",
    "delta": 1e-5,
    "rounds": 5,
    "batch_size": 16,
    "epochs": 1,
}
CFG = LocalTrainConfig(batch_size=16)


def _job(**budget: Any) -> dict[str, Any]:
    privacy = {
        "delta": 1e-5,
        "record_dp": {"enabled": True, "noise_multiplier": 1.0},
        "budget": budget,
    }
    return small_job(rounds=4, training={"batch_size": 16}, privacy=privacy)


def _guard(
    max_epsilon: float | None, log: Path | None = None, ledger: Path | None = None
) -> PrivacyGuard:
    settings = PartyPrivacy(max_epsilon=max_epsilon, audit_log=log, ledger=ledger)
    guard = PrivacyGuard("clinic-a", settings)
    guard.configure(PROPOSAL, rows=120)
    return guard


def test_guard_refuses_the_round_that_would_cross_the_budget() -> None:
    probe = _guard(None)
    first = probe.epsilon([round_spend(1.0, 16, 120, 1)])
    two = probe.epsilon([round_spend(1.0, 16, 120, 1)] * 2)
    guard = _guard(max_epsilon=(first + two) / 2)  # room for one round, not two
    assert guard.before_fit(1, CFG) is not None
    guard.after_fit(CFG)
    with pytest.raises(BudgetExhaustedError) as err:
        guard.before_fit(2, CFG)
    text = str(err.value)
    assert "party 'clinic-a' refuses round 2" in text
    assert f"budget is epsilon {(first + two) / 2:g}" in text
    assert f"to {two:.4f}" in text
    assert len(guard.spends) == 1  # the refused round spent nothing


def test_continue_goes_on_without_the_exhausted_party() -> None:
    probe = simulate(_job())
    eps = {r.round: r.privacy["parties"]["party-2"]["epsilon"] for r in probe.history}
    budget = (eps[2] + eps[3]) / 2  # party-2 can afford two rounds
    result = simulate(_job(parties={"party-2": budget}, on_exhausted="continue"))
    joined = [r.round for r in result.history if "party-2" in r.participants]
    assert joined == [1, 2]
    assert "refuses round 3" in result.history[2].failures["party-2"]
    assert result.history[-1].privacy["parties"]["party-2"]["epsilon"] <= budget
    assert {"party-1", "party-3"} <= set(result.history[-1].participants)


def test_stop_ends_the_job_naming_party_budget_and_projection() -> None:
    with pytest.raises(BudgetExhaustedError) as err:
        simulate(_job(max_epsilon=0.5, on_exhausted="stop"))
    text = str(err.value)
    assert "round 1" in text and "refuses" in text and "budget is epsilon 0.5" in text
    assert 'on_exhausted = "stop"' in text


def test_restarted_party_reads_its_spend_back_from_its_ledger(tmp_path: Path) -> None:
    from fedsilo.protocol.messages import Message, TaskKind

    log, ledger = tmp_path / "clinic-a.jsonl", tmp_path / "clinic-a.sqlite"
    guard = _guard(None, log, ledger)
    guard.before_fit(1, CFG)
    body = {"num_examples": 120, "train_loss": 0.5, "privacy": guard.after_fit(CFG)}
    guard.seal(Message(TaskKind.FIT, "job", 1, "clinic-a", body).encode())
    spent = guard.epsilon()

    restarted = _guard(max_epsilon=spent * 1.01, log=log, ledger=ledger)
    assert restarted.epsilon() == pytest.approx(spent)
    with pytest.raises(BudgetExhaustedError):
        restarted.before_fit(2, CFG)


def test_party_refuses_to_start_on_a_tampered_log(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_text('{"seq": 0, "prev": "x", "hash": "y"}\n')
    with pytest.raises(AuditError, match="broken at line 1"):
        PrivacyGuard("a", PartyPrivacy(audit_log=log))
