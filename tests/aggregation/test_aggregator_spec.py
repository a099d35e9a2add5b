"""AggregatorSpec composes the aggregators from configuration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedsilo.aggregation import (
    AggregatorKind,
    AggregatorSpec,
    coordinate_median,
    krum,
    trimmed_mean,
    weighted_mean,
)
from fedsilo.errors import AggregationError, ConfigError

# Same geometry as KRUM_CASE in test_aggregators.py: Krum scores 2, 3, 3, 82, huge.
UPDATES = np.array([[1.0, 2.0], [2.0, 2.0], [1.0, 3.0], [6.0, 7.0], [51.0, 52.0]])
WEIGHTS = np.array([1.0, 1.0, 2.0, 1.0, 1.0])


def test_default_spec_is_the_weighted_mean() -> None:
    spec = AggregatorSpec()
    assert spec.kind is AggregatorKind.MEAN
    np.testing.assert_array_equal(spec.aggregate(UPDATES, WEIGHTS), weighted_mean(UPDATES, WEIGHTS))


def test_each_kind_dispatches_to_its_function_with_the_spec_parameters() -> None:
    cases = {
        AggregatorKind.MEAN: weighted_mean(UPDATES, WEIGHTS),
        AggregatorKind.MEDIAN: coordinate_median(UPDATES, WEIGHTS),
        AggregatorKind.TRIMMED_MEAN: trimmed_mean(UPDATES, WEIGHTS, trim_ratio=0.2),
        AggregatorKind.KRUM: krum(UPDATES, WEIGHTS, num_byzantine=1),
        AggregatorKind.MULTI_KRUM: krum(UPDATES, WEIGHTS, num_byzantine=1, num_selected=3),
    }
    for kind, expected in cases.items():
        spec = AggregatorSpec(kind=kind, trim_ratio=0.2, num_byzantine=1, num_selected=3)
        np.testing.assert_array_equal(spec.aggregate(UPDATES, WEIGHTS), expected)


def test_trimmed_mean_spec_uses_its_trim_ratio() -> None:
    # trim 0.2 of 5 drops one value per end of each sorted column:
    # (1, 1, 2, 6, 51) -> (1+2+6)/3 = 3 ; (2, 2, 3, 7, 52) -> (2+3+7)/3 = 4
    spec = AggregatorSpec(kind=AggregatorKind.TRIMMED_MEAN, trim_ratio=0.2)
    np.testing.assert_allclose(spec.aggregate(UPDATES, WEIGHTS), [3.0, 4.0])


def test_krum_spec_keeps_one_party_even_if_num_selected_is_set() -> None:
    spec = AggregatorSpec(kind=AggregatorKind.KRUM, num_byzantine=1, num_selected=3)
    np.testing.assert_allclose(spec.aggregate(UPDATES, WEIGHTS), [1.0, 2.0])


def test_multi_krum_spec_keeps_n_minus_f_parties_by_default() -> None:
    spec = AggregatorSpec(kind=AggregatorKind.MULTI_KRUM, num_byzantine=1)
    # keeps rows 0..3 (weights 1, 1, 2, 1):
    # ((1,2) + (2,2) + 2*(1,3) + (6,7)) / 5 = (11/5, 17/5)
    np.testing.assert_allclose(spec.aggregate(UPDATES, WEIGHTS), [2.2, 3.4])


def test_multi_krum_spec_with_too_few_parties_reports_the_party_count() -> None:
    spec = AggregatorSpec(kind=AggregatorKind.MULTI_KRUM, num_byzantine=2)
    with pytest.raises(AggregationError, match="at least 7 parties; got 5"):
        spec.aggregate(UPDATES, WEIGHTS)


def test_only_the_mean_is_not_robust() -> None:
    robust = {kind: AggregatorSpec(kind=kind).is_robust for kind in AggregatorKind}
    assert robust == {
        AggregatorKind.MEAN: False,
        AggregatorKind.MEDIAN: True,
        AggregatorKind.TRIMMED_MEAN: True,
        AggregatorKind.KRUM: True,
        AggregatorKind.MULTI_KRUM: True,
    }


def test_kinds_are_spelled_as_in_config_files() -> None:
    assert [k.value for k in AggregatorKind] == [
        "mean",
        "median",
        "trimmed-mean",
        "krum",
        "multi-krum",
    ]
    assert AggregatorKind("trimmed-mean") is AggregatorKind.TRIMMED_MEAN


def test_spec_is_frozen() -> None:
    spec = AggregatorSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.trim_ratio = 0.3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("trim_ratio", 0.5, "trim_ratio"),
        ("trim_ratio", -0.01, "trim_ratio"),
        ("num_byzantine", -1, "num_byzantine"),
        ("num_selected", 0, "num_selected"),
        ("kind", "krum", "aggregator kind"),
    ],
)
def test_invalid_spec_raises_config_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AggregatorSpec(**{field: value})  # type: ignore[arg-type]
