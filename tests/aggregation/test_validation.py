"""Every aggregator rejects unusable input with an AggregationError that says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.aggregation import coordinate_median, krum, trimmed_mean, weighted_mean
from fedsilo.errors import AggregationError, FedsiloError
from tests.aggregation.conformance import Aggregator

AGGREGATORS: dict[str, Aggregator] = {
    "mean": weighted_mean,
    "median": coordinate_median,
    "trimmed-mean": lambda u, w: trimmed_mean(u, w, trim_ratio=0.2),
    "krum": lambda u, w: krum(u, w, num_byzantine=1),
    "multi-krum": lambda u, w: krum(u, w, num_byzantine=1, num_selected=3),
}
NAMES = sorted(AGGREGATORS)

GOOD_UPDATES = np.arange(15.0).reshape(5, 3)
GOOD_WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def _with(row: int, col: int, value: float) -> np.ndarray:
    updates = GOOD_UPDATES.copy()
    updates[row, col] = value
    return updates


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_update_is_rejected_naming_the_party_row(name: str, bad: float) -> None:
    with pytest.raises(AggregationError, match=r"party rows \[3\].*NaN or infinite"):
        AGGREGATORS[name](_with(3, 1, bad), GOOD_WEIGHTS)


@pytest.mark.parametrize("name", NAMES)
def test_weights_of_the_wrong_length_are_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match=r"weights must have shape \(5,\).*\(4,\)"):
        AGGREGATORS[name](GOOD_UPDATES, GOOD_WEIGHTS[:4])


@pytest.mark.parametrize("name", NAMES)
def test_two_dimensional_weights_are_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match="weights must have shape"):
        AGGREGATORS[name](GOOD_UPDATES, GOOD_WEIGHTS.reshape(5, 1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(15,), (5, 3, 1), ()])
def test_updates_that_are_not_a_matrix_are_rejected(name: str, shape: tuple[int, ...]) -> None:
    updates = np.zeros(shape)
    with pytest.raises(AggregationError, match=r"shape \(n_parties, n_params\)"):
        AGGREGATORS[name](updates, GOOD_WEIGHTS)


@pytest.mark.parametrize("name", NAMES)
def test_no_parties_is_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match="0 parties"):
        AGGREGATORS[name](np.zeros((0, 3)), np.zeros(0))


@pytest.mark.parametrize("name", NAMES)
def test_no_parameters_is_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match="0 parameters"):
        AGGREGATORS[name](np.zeros((5, 0)), GOOD_WEIGHTS)


@pytest.mark.parametrize("name", NAMES)
def test_zero_weights_are_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match="weights sum to zero"):
        AGGREGATORS[name](GOOD_UPDATES, np.zeros(5))


@pytest.mark.parametrize("name", NAMES)
def test_negative_weights_are_rejected_naming_the_party_row(name: str) -> None:
    weights = np.array([1.0, -2.0, 3.0, 4.0, 5.0])
    with pytest.raises(AggregationError, match=r"nonnegative.*rows \[1\]"):
        AGGREGATORS[name](GOOD_UPDATES, weights)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_rejected(name: str, bad: float) -> None:
    weights = np.array([1.0, bad, 3.0, 4.0, 5.0])
    with pytest.raises(AggregationError, match="weights contain NaN or infinite"):
        AGGREGATORS[name](GOOD_UPDATES, weights)


@pytest.mark.parametrize("name", NAMES)
def test_non_numeric_updates_are_rejected(name: str) -> None:
    with pytest.raises(AggregationError, match="real numeric array"):
        AGGREGATORS[name](GOOD_UPDATES.astype(str), GOOD_WEIGHTS)
    with pytest.raises(AggregationError, match="real numeric array"):
        AGGREGATORS[name](GOOD_UPDATES > 3, GOOD_WEIGHTS)


def test_aggregation_error_is_a_fedsilo_error() -> None:
    with pytest.raises(FedsiloError):
        weighted_mean(np.zeros((0, 1)), np.zeros(0))


def test_overflow_is_reported_instead_of_returning_infinity() -> None:
    updates = np.array([[1.7e308], [1.7e308], [1.7e308]])
    with pytest.raises(AggregationError, match="overflowed"):
        trimmed_mean(updates, np.ones(3), trim_ratio=0.0)  # the sum exceeds float64


def test_weighted_mean_of_huge_but_finite_updates_does_not_overflow() -> None:
    updates = np.array([[1.7e308], [1.7e308]])
    np.testing.assert_allclose(weighted_mean(updates, np.array([1.0, 3.0])), [1.7e308])
