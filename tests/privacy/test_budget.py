"""Budgets: a party refuses a round that would exceed its epsilon, and never forgets spend."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fedsilo.config import JobConfig, parse_job
from fedsilo.errors import AuditError, BudgetExhaustedError
from fedsilo.privacy.dp_sgd import round_spend
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.protocol.messages import Message, TaskKind
from fedsilo.runtime.coordinator import Coordinator
from fedsilo.runtime.transport import InProcessTransport
from fedsilo.simulation import (
    load_simulated_data,
    simulate,
    simulated_agents,
    simulated_party_identities,
)
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


def _agents(raw: dict[str, Any], audit_dir: Path | None = None) -> tuple[JobConfig, dict[str, Any]]:
    job = parse_job(raw, source="test")
    sim = load_simulated_data(job)
    identities = simulated_party_identities(job, sim.parties)
    return job, dict(simulated_agents(job, sim, identities, audit_dir))


def _round_loop(raw: dict[str, Any], audit_dir: Path | None = None) -> Any:
    """The round loop alone, as a deployed coordinator runs it: it does not know the parties'
    budgets, and each party refuses round by round. (A simulation refuses before round 1 a job
    its budgets would stop: tests/runtime/test_budget_outlook.py.)"""
    job, agents = _agents(raw, audit_dir)
    return Coordinator(job, InProcessTransport(agents)).run()


def test_stop_ends_the_job_naming_party_budget_and_projection() -> None:
    with pytest.raises(BudgetExhaustedError) as err:
        _round_loop(_job(max_epsilon=0.5, on_exhausted="stop"))
    text = str(err.value)
    assert "round 1" in text and "refuses" in text and "budget is epsilon 0.5" in text
    assert 'on_exhausted = "stop"' in text


def _fit_refusals(audit_dir: Path, party: str) -> int:
    lines = [json.loads(x) for x in (audit_dir / f"{party}.jsonl").read_text().splitlines()]
    return sum(e.get("kind") == "fit" and e.get("error_code") == "budget_exhausted" for e in lines)


def test_every_party_refusing_for_its_budget_stops_the_job_without_a_retry(
    tmp_path: Path,
) -> None:
    job = _job(max_epsilon=0.5, on_exhausted="continue")
    job["selection"] = {"min_parties": 2, "max_round_retries": 2}
    with pytest.raises(BudgetExhaustedError) as err:
        _round_loop(job, audit_dir=tmp_path)
    text = str(err.value)
    assert text.startswith("round 1: the job stops: parties 'party-1', 'party-2' and 'party-3' ")
    assert "have spent their privacy budget" in text and "not retried" in text
    assert "leaves 0 parties that could train, fewer than selection.min_parties = 2" in text
    assert "party 'party-3' refuses round 1: its privacy budget is epsilon 0.5" in text
    assert "attempt" not in text
    for party in ("party-1", "party-2", "party-3"):
        assert _fit_refusals(tmp_path, party) == 1  # asked once, refused once: no retry


def test_refusals_leaving_too_few_parties_stop_the_job_naming_only_the_spent_ones(
    tmp_path: Path,
) -> None:
    job = _job(parties={"party-3": 0.5}, on_exhausted="continue")
    job["selection"] = {"min_parties": 3, "max_round_retries": 2}
    with pytest.raises(BudgetExhaustedError) as err:
        _round_loop(job, audit_dir=tmp_path)
    text = str(err.value)
    assert text.startswith("round 1: the job stops: party 'party-3' has spent its privacy budget")
    assert "leaves 2 parties ('party-1' and 'party-2') that could train" in text
    assert "selection.min_parties = 3" in text
    assert _fit_refusals(tmp_path, "party-3") == 1


class _FailsFirstFit:
    """A party whose process fails its first fit task, then answers as it should."""

    def __init__(self, agent: Any) -> None:
        self.agent, self.failed = agent, False

    def handle(self, data: bytes) -> bytes:
        if not self.failed and Message.decode(data).kind is TaskKind.FIT:
            self.failed = True
            raise RuntimeError("out of memory")
        return bytes(self.agent.handle(data))


def test_a_spent_party_beside_a_transient_failure_still_lets_the_round_retry() -> None:
    job, agents = _agents(_job(parties={"party-3": 0.5}, on_exhausted="continue"))
    agents["party-2"] = _FailsFirstFit(agents["party-2"])
    outcome = Coordinator(job, InProcessTransport(agents)).run()
    first = outcome.history[0]
    assert first.attempts == 2  # party-1 and party-2 can still meet min_parties = 2
    assert first.participants == ["party-1", "party-2"]
    assert "refuses round 1" in first.failures["party-3"]
    assert all(r.participants == ["party-1", "party-2"] for r in outcome.history)


def test_each_refusal_is_logged_once_per_party_and_round(caplog: pytest.LogCaptureFixture) -> None:
    # party-3 refuses every round; round 1 is tried twice (party-2 fails its first fit), and
    # party-3 refuses both attempts. Party side, router, round loop and budget tracker all see
    # each refusal: the tracker, which decides what the job does about it, says it.
    job, agents = _agents(_job(parties={"party-3": 0.5}, on_exhausted="continue"))
    agents["party-2"] = _FailsFirstFit(agents["party-2"])

    with caplog.at_level(logging.WARNING):
        outcome = Coordinator(job, InProcessTransport(agents)).run()

    assert outcome.history[0].attempts == 2
    said = [
        (r.name, r.getMessage())
        for r in caplog.records
        if "party 'party-3' refuses round" in r.getMessage()
    ]
    assert [m.split("refuses round ")[1].split(":")[0] for _, m in said] == ["1", "2", "3", "4"]
    assert {name for name, _ in said} == {"fedsilo.runtime.record_spend"}
    assert "_compute_log_a_frac" not in caplog.text


def test_restarted_party_reads_its_spend_back_from_its_ledger(tmp_path: Path) -> None:
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
