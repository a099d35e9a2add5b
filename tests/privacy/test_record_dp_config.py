"""Privacy config: every mistake is a ConfigError that says what to do."""

from __future__ import annotations

from typing import Any

import pytest

from fedsilo.config import OnBudgetExhausted, parse_job
from fedsilo.errors import ConfigError
from fedsilo.privacy.accounting import AccountingMethod
from tests.conftest import small_job


def _job(privacy: dict[str, Any], **more: Any) -> dict[str, Any]:
    return small_job(privacy=privacy, **more)


def test_record_dp_defaults_parse() -> None:
    job = parse_job(
        _job({"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplier": 1.1}}), source="t"
    )
    dp = job.privacy.record_dp
    assert (dp.noise_multiplier, dp.max_grad_norm, dp.accounting) == (
        1.1,
        1.0,
        AccountingMethod.RDP,
    )
    assert job.privacy.budget.on_exhausted is OnBudgetExhausted.CONTINUE


def test_dp_without_delta_says_to_set_it() -> None:
    with pytest.raises(ConfigError, match=r"set privacy\.delta, e\.g\. 1e-5"):
        parse_job(_job({"record_dp": {"enabled": True, "noise_multiplier": 1.0}}), source="t")


def test_both_noise_and_target_is_an_error() -> None:
    raw = {"enabled": True, "noise_multiplier": 1.0, "target_epsilon": 3.0}
    with pytest.raises(ConfigError, match="noise_multiplier or target_epsilon, not both"):
        parse_job(_job({"delta": 1e-5, "record_dp": raw}), source="t")


def test_neither_noise_nor_target_is_an_error() -> None:
    with pytest.raises(ConfigError, match="sets neither noise_multiplier"):
        parse_job(_job({"delta": 1e-5, "record_dp": {"enabled": True}}), source="t")


@pytest.mark.parametrize(
    ("privacy", "key"),
    [
        ({"delta": 1.5}, "privacy.delta"),
        ({"delta": 0}, "privacy.delta"),
        ({"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplier": -1}}, "noise_mult"),
        ({"delta": 1e-5, "record_dp": {"enabled": True, "target_epsilon": 0}}, "target_epsilon"),
        (
            {
                "delta": 1e-5,
                "record_dp": {"enabled": True, "noise_multiplier": 1, "max_grad_norm": 0},
            },
            "max_grad_norm",
        ),
        (
            {
                "delta": 1e-5,
                "record_dp": {"enabled": True, "noise_multiplier": 1, "accounting": "x"},
            },
            "accounting",
        ),
        ({"budget": {"max_epsilon": -2}}, "budget.max_epsilon"),
        ({"budget": {"on_exhausted": "ignore"}}, "on_exhausted"),
        ({"budget": {"parties": {"party-1": 0}}}, "privacy.budget.parties"),
    ],
)
def test_nonsense_values_name_the_key(privacy: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_job(_job(privacy), source="t")


def test_misspelled_privacy_key_gets_a_suggestion() -> None:
    raw = {"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplyer": 1.0}}
    with pytest.raises(ConfigError, match=r"Did you mean 'privacy\.record_dp\.noise_multiplier'"):
        parse_job(_job(raw), source="t")


def test_record_dp_with_fedprox_is_refused() -> None:
    raw = _job(
        {"delta": 1e-5, "record_dp": {"enabled": True, "noise_multiplier": 1.0}},
        training={"proximal_mu": 0.1},
    )
    with pytest.raises(ConfigError, match="set proximal_mu = 0"):
        parse_job(raw, source="t")


def test_per_party_budget_overrides_the_default() -> None:
    job = parse_job(_job({"budget": {"max_epsilon": 3, "parties": {"party-2": 1}}}), source="t")
    assert job.privacy.budget.max_epsilon_for("party-1") == 3
    assert job.privacy.budget.max_epsilon_for("party-2") == 1
