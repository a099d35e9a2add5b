"""Properties every aggregator must have, checked by :func:`check_aggregator`.

- the result is a finite float64 vector of shape ``(n_params,)``;
- reordering the parties (rows together with their weights) does not change the result;
- when every party sends the same vector, the result is that vector;
- the caller's arrays are not modified.

Inputs are drawn from a seeded normal distribution, so distinct parties never tie exactly
(Krum breaks ties by index, which is deterministic but not permutation-invariant).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

Aggregator = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Krum with num_byzantine=1 needs at least 5 parties, so every case has 5 or more.
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((5, 1), (5, 3), (6, 2), (7, 4), (9, 5))


def check_aggregator_on(fn: Aggregator, updates: np.ndarray, weights: np.ndarray) -> None:
    """Assert the conformance properties of ``fn`` on one input (see module docstring)."""
    n_parties, n_params = updates.shape
    updates_before, weights_before = updates.copy(), weights.copy()

    result = fn(updates, weights)
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.float64
    assert result.shape == (n_params,)
    assert np.isfinite(result).all()
    np.testing.assert_array_equal(updates, updates_before)
    np.testing.assert_array_equal(weights, weights_before)

    scale = max(1.0, float(np.abs(updates).max()))
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(n_parties)
        permuted = fn(updates[order], weights[order])
        np.testing.assert_allclose(permuted, result, rtol=1e-10, atol=1e-12 * scale)

    for row in (0, n_parties - 1):
        same = np.tile(updates[row], (n_parties, 1))
        np.testing.assert_allclose(fn(same, weights), updates[row], rtol=1e-12, atol=1e-12)


def check_aggregator(
    fn: Aggregator,
    *,
    seeds: Iterable[int] = range(4),
    shapes: Iterable[tuple[int, int]] = DEFAULT_SHAPES,
) -> None:
    """Run :func:`check_aggregator_on` over seeded random cases of several shapes."""
    shapes = tuple(shapes)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for n_parties, n_params in shapes:
            updates = rng.normal(loc=rng.normal(), scale=3.0, size=(n_parties, n_params))
            weights = rng.integers(1, 500, size=n_parties).astype(np.float64)
            check_aggregator_on(fn, updates, weights)
