"""Our accounting and `fedsilo privacy plan` against dp_accounting called directly."""

from __future__ import annotations

import json

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from typer.testing import CliRunner

from fedsilo.cli import app
from fedsilo.errors import BudgetExhaustedError
from fedsilo.privacy.accounting import (
    AccountingMethod,
    GaussianSpend,
    epsilon,
    noise_for_epsilon,
    plan_spend,
)
from fedsilo.privacy.ledger import Budget, PrivacyLedger

runner = CliRunner()


def _reference(q: float, sigma: float, steps: int, delta: float, accountant: object) -> float:
    gaussian = dp_accounting.GaussianDpEvent(sigma)
    event = gaussian if q >= 1 else dp_accounting.PoissonSampledDpEvent(q, gaussian)
    acc = accountant
    assert isinstance(acc, dp_accounting.PrivacyAccountant)
    acc.compose(dp_accounting.SelfComposedDpEvent(event, steps))
    return float(acc.get_epsilon(delta))


def test_abadi_mnist_setting_matches_dp_accounting_rdp() -> None:
    # Abadi et al. 2016, Sec. 5: lot 600 of 60,000 (q = 0.01), sigma = 4, delta = 1e-5.
    expected = _reference(0.01, 4.0, 10_000, 1e-5, rdp.RdpAccountant())
    ours = epsilon(GaussianSpend(4.0, 0.01, 10_000), 1e-5, AccountingMethod.RDP)
    assert ours == pytest.approx(expected, rel=1e-12)
    # RDP gives 1.04 here (the paper's moments accountant reports about 1.26).
    assert 1.0 < ours < 1.26


def test_abadi_mnist_setting_matches_dp_accounting_pld() -> None:
    expected = _reference(0.01, 4.0, 10_000, 1e-5, pld.PLDAccountant())
    ours = epsilon(GaussianSpend(4.0, 0.01, 10_000), 1e-5, AccountingMethod.PLD)
    assert ours == pytest.approx(expected, rel=1e-9)
    # PLD is tighter than RDP for the same mechanism.
    assert ours < epsilon(GaussianSpend(4.0, 0.01, 10_000), 1e-5, AccountingMethod.RDP)


@pytest.mark.parametrize("method", [AccountingMethod.RDP, AccountingMethod.PLD])
def test_dp_fedavg_every_party_every_round_spends_about_92_to_96(
    method: AccountingMethod,
) -> None:
    acc = rdp.RdpAccountant() if method is AccountingMethod.RDP else pld.PLDAccountant()
    expected = _reference(1.0, 1.0, 100, 1e-5, acc)
    ours = epsilon(GaussianSpend(1.0, 1.0, 100), 1e-5, method)
    assert ours == pytest.approx(expected, rel=1e-9)
    assert 90 < ours < 97


def test_composition_of_rounds_equals_one_long_run() -> None:
    rounds = [GaussianSpend(1.2, 0.05, 40)] * 10
    assert epsilon(rounds, 1e-5) == pytest.approx(epsilon(GaussianSpend(1.2, 0.05, 400), 1e-5))


def test_noise_for_epsilon_reaches_the_target_from_below() -> None:
    noise = noise_for_epsilon(3.0, 1e-5, 0.1, 100, tolerance=1e-4)
    assert epsilon(GaussianSpend(noise, 0.1, 100), 1e-5) <= 3.0
    assert epsilon(GaussianSpend(noise - 1e-3, 0.1, 100), 1e-5) > 3.0


def test_plan_cli_prints_the_reference_epsilon() -> None:
    expected = _reference(0.01, 4.0, 10_000, 1e-5, rdp.RdpAccountant())
    args = ["privacy", "plan", "--noise", "4", "--rounds", "100", "--sample-rate", "0.01"]
    args += ["--delta", "1e-5", "--steps-per-round", "100"]
    text = runner.invoke(app, args)
    assert text.exit_code == 0, text.output
    assert f"epsilon = {expected:.4f}" in text.output
    as_json = runner.invoke(app, [*args, "--json"])
    assert json.loads(as_json.output)["epsilon"] == pytest.approx(expected, rel=1e-12)


def test_plan_cli_pld_dp_fedavg_setting() -> None:
    expected = _reference(1.0, 1.0, 100, 1e-5, pld.PLDAccountant())
    args = ["privacy", "plan", "--noise", "1", "--rounds", "100", "--sample-rate", "1"]
    out = runner.invoke(app, [*args, "--delta", "1e-5", "--method", "pld", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["epsilon"] == pytest.approx(expected, rel=1e-9)


def test_plan_cli_finds_the_noise_for_a_target() -> None:
    args = ["privacy", "plan", "--target-epsilon", "3", "--rounds", "100"]
    out = runner.invoke(app, [*args, "--sample-rate", "0.1", "--delta", "1e-5", "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.output)
    direct = _reference(0.1, answer["noise_multiplier"], 100, 1e-5, rdp.RdpAccountant())
    assert direct <= 3.0
    assert direct == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize("max_epsilon", [0.1, 1.0, 2.5, 2.9, 3.0])
def test_a_plan_affords_the_rounds_a_ledger_charges_before_it_refuses(max_epsilon: float) -> None:
    # examples/hospitals_dp.toml's smallest party: 34 rows, batch 16, target 3 over 20 rounds
    plan = plan_spend(20, 16 / 34, 1e-5, target_epsilon=3.0, steps_per_round=2)
    ledger, budget = PrivacyLedger(None, "party-2"), Budget(max_epsilon, 1e-5)
    charged = 0
    with pytest.raises(BudgetExhaustedError):
        for rnd in range(1, plan.rounds + 2):  # one past the plan: always refused at last
            ledger.charge(
                plan.spend(1),
                budget,
                source="training",
                job="j",
                round=rnd,
                what="r",
                refuse=lambda before, after: "refused",
            )
            charged = rnd
    assert plan.rounds_within(max_epsilon) == min(charged, plan.rounds)
    assert plan.epsilon == epsilon(plan.spend(plan.rounds), 1e-5) <= 3.0


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--noise", "1", "--target-epsilon", "3"], "exactly one of --noise or --target-epsilon"),
        ([], "exactly one of --noise or --target-epsilon"),
        (["--noise", "1", "--method", "moments"], "--method must be rdp or pld"),
        (["--noise", "-1"], "noise multiplier must be a positive number"),
    ],
)
def test_plan_cli_rejects_bad_input_with_exit_2(extra: list[str], says: str) -> None:
    args = ["privacy", "plan", "--rounds", "10", "--sample-rate", "0.1", "--delta", "1e-5"]
    out = runner.invoke(app, [*args, *extra])
    assert out.exit_code == 2
    assert says in out.output
