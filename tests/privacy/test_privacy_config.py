"""Privacy settings that cannot work together are refused, saying why."""

from __future__ import annotations

from typing import Any

import pytest

from fedsilo.config import parse_job
from fedsilo.errors import ConfigError
from tests.conftest import small_job


def _parse(**overrides: Any) -> None:
    parse_job(small_job(**overrides), source="job.toml")


@pytest.mark.parametrize("aggregator", ["median", "trimmed-mean", "krum", "multi-krum"])
def test_robust_aggregation_with_secure_aggregation_is_refused(aggregator: str) -> None:
    with pytest.raises(ConfigError, match=r"sees only the sum.*cannot rank or trim"):
        _parse(
            aggregation={"aggregator": aggregator},
            privacy={"secure_aggregation": {"enabled": True}},
        )


def test_client_dp_without_delta_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"privacy.delta is not set"):
        _parse(privacy={"client_dp": {"enabled": True}})


def test_both_dp_levels_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"one job reports one DP level"):
        _parse(
            privacy={
                "delta": 1e-5,
                "record_dp": {"enabled": True, "noise_multiplier": 1.0},
                "client_dp": {"enabled": True},
            }
        )


def test_distributed_noise_without_secure_aggregation_is_refused() -> None:
    with pytest.raises(ConfigError, match="sees each party's update"):
        _parse(privacy={"delta": 1e-5, "client_dp": {"enabled": True, "noise": "distributed"}})


def test_client_dp_with_robust_aggregation_is_refused() -> None:
    with pytest.raises(ConfigError, match="different sensitivity"):
        _parse(
            aggregation={"aggregator": "median"},
            privacy={"delta": 1e-5, "client_dp": {"enabled": True}},
        )


def test_secure_aggregation_with_two_parties_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 3 parties"):
        _parse(data={"num_parties": 2}, privacy={"secure_aggregation": {"enabled": True}})


def test_neighbours_without_secagg_plus_is_refused() -> None:
    with pytest.raises(ConfigError, match="secagg\\+"):
        _parse(privacy={"secure_aggregation": {"enabled": True, "neighbours": 4}})


def test_ring_too_small_for_the_parties_is_refused() -> None:
    with pytest.raises(ConfigError, match="bits"):
        _parse(
            data={"num_parties": 300},
            privacy={"secure_aggregation": {"enabled": True, "bits": 16}},
        )


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ConfigError, match="variant"):
        _parse(privacy={"secure_aggregation": {"enabled": True, "variant": "secagg++"}})


def test_valid_private_settings_parse() -> None:
    job = parse_job(
        small_job(
            privacy={
                "delta": 1e-5,
                "secure_aggregation": {"enabled": True, "variant": "secagg+", "neighbours": 2},
                "client_dp": {"enabled": True, "noise": "distributed", "adaptive_clipping": True},
            }
        ),
        source="job.toml",
    )
    assert job.privacy.client_dp.noise.value == "distributed"
