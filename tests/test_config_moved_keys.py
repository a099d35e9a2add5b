"""Keys that moved or belong to another job kind are refused with where they go."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fedsilo.analytics.config import SecureAggregationSettings
from fedsilo.deploy.config import PartyAnalyticsConfig


@pytest.mark.parametrize("key", ["ledger", "max_epsilon"])
def test_party_analytics_budget_keys_point_at_privacy(key: str) -> None:
    with pytest.raises(ValidationError, match=rf"'{key}' moved to \[privacy\]: a party has one"):
        PartyAnalyticsConfig.model_validate({key: 1})


@pytest.mark.parametrize("key", ["clip_range", "bits"])
def test_analytics_secure_aggregation_refuses_training_keys(key: str) -> None:
    with pytest.raises(ValidationError, match=rf"'{key}' is a training setting; analytics"):
        SecureAggregationSettings.model_validate({"enabled": True, key: 1})


def test_configs_without_refused_keys_pass_through() -> None:
    assert PartyAnalyticsConfig.model_validate({}).tables == {}
    assert SecureAggregationSettings.model_validate({"enabled": True}).enabled
