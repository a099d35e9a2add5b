"""Every aggregator satisfies the shared conformance properties (see conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsilo.aggregation import coordinate_median, krum, trimmed_mean, weighted_mean
from tests.aggregation.conformance import Aggregator, check_aggregator, check_aggregator_on


def _trimmed(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return trimmed_mean(updates, weights, trim_ratio=0.2)


def _krum(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return krum(updates, weights, num_byzantine=1)


def _multi_krum(updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return krum(updates, weights, num_byzantine=1, num_selected=3)


ALL_AGGREGATORS: dict[str, Aggregator] = {
    "mean": weighted_mean,
    "median": coordinate_median,
    "trimmed-mean": _trimmed,
    "krum": _krum,
    "multi-krum": _multi_krum,
}


@pytest.mark.parametrize("name", sorted(ALL_AGGREGATORS))
def test_aggregator_conforms_on_seeded_cases(name: str) -> None:
    check_aggregator(ALL_AGGREGATORS[name])


@pytest.mark.parametrize("name", sorted(ALL_AGGREGATORS))
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_parties=st.integers(5, 12),
    n_params=st.integers(1, 6),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
)
def test_aggregator_conforms_on_random_cases(
    name: str, seed: int, n_parties: int, n_params: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    updates = rng.normal(scale=scale, size=(n_parties, n_params))
    weights = rng.integers(1, 1000, size=n_parties).astype(np.float64)
    check_aggregator_on(ALL_AGGREGATORS[name], updates, weights)
