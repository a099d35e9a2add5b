"""The party's one privacy ledger: dp-accounting composition, atomic check-and-charge, ownership."""

from __future__ import annotations

import threading
from pathlib import Path

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from fedsilo.errors import BudgetExhaustedError, LedgerError
from fedsilo.privacy.accounting import AccountingMethod, GaussianSpend, LaplaceSpend, epsilon
from fedsilo.privacy.guard import PartyPrivacy, PrivacyGuard
from fedsilo.privacy.ledger import Budget, PrivacyLedger
from fedsilo.privacy.secagg import keys

DELTA = 1e-5
TRAINING = GaussianSpend(1.1, 0.05, 20)  # a DP-SGD round: Poisson-sampled Gaussian, 20 steps
QUERY_G = GaussianSpend(3.0, 1.0, 1)  # a Gaussian analytics answer
QUERY_L = LaplaceSpend(0.5)  # a Laplace analytics answer


def _refuse(before: float, after: float) -> str:
    return f"refused: {before:.4f} -> {after:.4f}"


def _charge(ledger: PrivacyLedger, spend: GaussianSpend | LaplaceSpend, budget: Budget) -> float:
    return ledger.charge(
        spend, budget, source="query", job="j", round=0, what="q", refuse=_refuse
    ).after


@pytest.mark.parametrize("method", list(AccountingMethod))
def test_training_and_query_events_compose_in_one_ledger_as_dp_accounting_says(
    tmp_path: Path, method: AccountingMethod
) -> None:
    ledger = PrivacyLedger(tmp_path / "p.sqlite", "p")
    budget = Budget(None, DELTA, method)
    events = [TRAINING, QUERY_L, TRAINING, QUERY_G, QUERY_L, QUERY_L]
    if method is AccountingMethod.PLD:  # PLD is slow: the same mechanisms, fewer repeats
        events = [TRAINING, QUERY_G, QUERY_L]
    for e in events:
        after = ledger.charge(
            e,
            budget,
            source="training" if e is TRAINING else "query",
            job="j",
            round=1,
            what="x",
            refuse=_refuse,
        ).after
    # dp_accounting directly, from the mechanisms' parameters
    acc = rdp.RdpAccountant() if method is AccountingMethod.RDP else pld.PLDAccountant()
    sampled = dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.1))
    rounds, laplace = (2, 3) if method is AccountingMethod.RDP else (1, 1)
    acc.compose(dp_accounting.SelfComposedDpEvent(sampled, 20), rounds)
    acc.compose(dp_accounting.GaussianDpEvent(3.0))
    acc.compose(dp_accounting.LaplaceDpEvent(1 / 0.5), laplace)
    composed = acc.get_epsilon(DELTA)
    # basic composition (Gaussian part at delta, plus the pure Laplace epsilons) is also valid
    gauss = rdp.RdpAccountant() if method is AccountingMethod.RDP else pld.PLDAccountant()
    gauss.compose(dp_accounting.SelfComposedDpEvent(sampled, 20), rounds)
    gauss.compose(dp_accounting.GaussianDpEvent(3.0))
    expected = min(composed, gauss.get_epsilon(DELTA) + laplace * 0.5)
    assert after == pytest.approx(expected, rel=1e-9)
    assert ledger.spent(budget) == pytest.approx(expected, rel=1e-9)
    assert [e.source for e in ledger.entries()] == [
        "training" if e is TRAINING else "query" for e in events
    ]


def test_many_laplace_answers_compose_below_the_sum_of_their_epsilons() -> None:
    # the old analytics ledger added Laplace epsilons: 40 x 0.5 = 20
    assert epsilon([LaplaceSpend(0.5)] * 40, DELTA, AccountingMethod.PLD) < 15.0
    assert epsilon(LaplaceSpend(0.5), DELTA) == 0.5  # one answer: exactly its epsilon


def test_a_refused_charge_records_nothing(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "p.sqlite", "p")
    budget = Budget(1.2, DELTA)
    _charge(ledger, LaplaceSpend(1.0), budget)
    with pytest.raises(BudgetExhaustedError, match=r"refused: 1\.0000 -> 2\.0000"):
        _charge(ledger, LaplaceSpend(1.0), budget)
    assert len(ledger.entries()) == 1


def _sequential_capacity(spend: LaplaceSpend, budget: Budget) -> int:
    ledger = PrivacyLedger(None, "probe")
    n = 0
    while True:
        try:
            _charge(ledger, spend, budget)
        except BudgetExhaustedError:
            return n
        n += 1


def test_eight_threads_with_their_own_connections_never_exceed_the_budget(tmp_path: Path) -> None:
    """8 writers, each its own connection to one file (as 8 processes would be): the budget
    admits exactly as many releases as one at a time, and no release is lost."""
    spend, budget = LaplaceSpend(0.7), Budget(5.0, DELTA, AccountingMethod.RDP)
    capacity = _sequential_capacity(spend, budget)
    assert 3 < capacity < 8 * 4
    path = tmp_path / "p.sqlite"
    PrivacyLedger(path, "p").close()
    answered: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        ledger = PrivacyLedger(path, "p")
        start.wait()
        for _ in range(4):
            try:
                _charge(ledger, spend, budget)
                answered.append(i)
            except BudgetExhaustedError:
                refused.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = PrivacyLedger(path, "p")
    assert len(answered) == capacity == len(final.entries())  # none over, none lost
    assert len(answered) + len(refused) == 32
    assert final.spent(budget) <= budget.max_epsilon  # type: ignore[operator]


def test_a_ledger_belongs_to_one_party_and_one_identity_key(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    key = keys.identity_public(keys.new_identity_key()).hex()
    PrivacyLedger(path, "bank-a", identity=key).close()
    with pytest.raises(LedgerError, match="belongs to party 'bank-a', not 'bank-b'"):
        PrivacyLedger(path, "bank-b")
    with pytest.raises(LedgerError, match="a new key does not start a new budget"):
        PrivacyLedger(path, "bank-a", identity=keys.identity_public(keys.new_identity_key()).hex())
    PrivacyLedger(path, "bank-a", identity=key).close()  # the same key opens it


def test_a_party_with_another_identity_key_cannot_open_its_ledger(tmp_path: Path) -> None:
    """The guard keys the ledger by the party's identity key: a new key is refused, not given
    the old spend under a fresh identity."""
    path, key = tmp_path / "p.sqlite", keys.new_identity_key()
    PrivacyGuard("bank-a", PartyPrivacy(ledger=path, signing_key=key)).ledger.close()
    with pytest.raises(LedgerError, match="a new key does not start a new budget"):
        PrivacyGuard("bank-a", PartyPrivacy(ledger=path, signing_key=keys.new_identity_key()))
    PrivacyGuard("bank-a", PartyPrivacy(ledger=path, signing_key=key)).ledger.close()


def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot be opened"):
        PrivacyLedger(junk, "p")
