"""The one-run epsilon lower bound (Steinke, Nasr & Jagielski 2023) against values computed
independently: by hand, by exact binomial sums (math.comb, no scipy) and by root finding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from fedsilo.errors import ConfigError
from fedsilo.privacy.one_run import (
    audit_scores,
    count_correct,
    epsilon_lower_bound,
    guess_counts,
    one_run_p_value,
    tpr_at_fpr,
)


def exact_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The theorem's bound from its definition, with exact binomial sums."""
    q = math.exp(eps) / (1 + math.exp(eps))

    def pmf(j: int) -> float:
        return math.comb(r, j) * q**j * (1 - q) ** (r - j)

    beta = sum(pmf(j) for j in range(v, r + 1))
    alpha = max((sum(pmf(j) for j in range(v - i, v)) / i for i in range(1, v + 1)), default=0)
    return min(1.0, beta + 2 * m * delta * alpha)


def test_p_value_of_a_hand_computed_case() -> None:
    # r = 2 guesses, both right, eps = ln 3 (q = 3/4): beta = 9/16; alpha = max(P[B=1] / 1,
    # (P[B=1] + P[B=0]) / 2) = max(6/16, 7/32) = 3/8; p = 9/16 + 2 * 2 * 0.01 * 3/8 = 0.5775.
    assert one_run_p_value(2, 2, 2, math.log(3), 0.0) == pytest.approx(9 / 16, rel=1e-12)
    assert one_run_p_value(2, 2, 2, math.log(3), 0.01) == pytest.approx(0.5775, rel=1e-12)


@pytest.mark.parametrize(
    ("m", "r", "v", "eps", "delta"),
    [
        (100, 10, 9, 1.0, 0.0),
        (100, 40, 33, 0.7, 1e-5),
        (1000, 60, 55, 2.5, 1e-3),
        (50, 8, 0, 1, 0.1),
    ],
)
def test_p_value_equals_the_exact_binomial_sums(
    m: int, r: int, v: int, eps: float, delta: float
) -> None:
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(
        exact_p_value(m, r, v, eps, delta), rel=1e-9
    )


@pytest.mark.parametrize(("r", "confidence"), [(10, 0.95), (40, 0.99), (200, 0.9)])
def test_all_guesses_right_without_delta_has_a_closed_form(r: int, confidence: float) -> None:
    # p = q^r, so the largest rejected epsilon solves q^r = 1 - confidence: q = (1 - c)^(1/r).
    q = (1 - confidence) ** (1 / r)
    expected = math.log(q / (1 - q))
    assert epsilon_lower_bound(1000, r, r, 0.0, confidence) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("m", "r", "v", "delta"), [(200, 40, 36, 1e-5), (1000, 60, 52, 1e-4)])
def test_bound_is_the_root_of_the_exact_p_value(m: int, r: int, v: int, delta: float) -> None:
    expected = brentq(lambda e: exact_p_value(m, r, v, e, delta) - 0.05, 0.0, 20.0, xtol=1e-12)
    bound = epsilon_lower_bound(m, r, v, delta, 0.95)
    assert bound == pytest.approx(expected, abs=1e-8)
    assert exact_p_value(m, r, v, bound, delta) < 0.05  # the returned epsilon is rejected


def test_delta_only_lowers_the_bound() -> None:
    without = epsilon_lower_bound(1000, 100, 90, 0.0, 0.95)
    assert 0 < epsilon_lower_bound(1000, 100, 90, 1e-4, 0.95) < without


def test_chance_level_guessing_shows_nothing() -> None:
    assert epsilon_lower_bound(100, 20, 10, 0.0, 0.95) == 0.0
    assert epsilon_lower_bound(100, 20, 0, 1e-5, 0.95) == 0.0


def test_invalid_counts_are_refused_with_the_numbers() -> None:
    with pytest.raises(ConfigError, match="correct=5, guesses=4"):
        one_run_p_value(10, 4, 5, 1.0, 0.0)
    with pytest.raises(ConfigError, match="confidence"):
        epsilon_lower_bound(10, 4, 4, 0.0, 1.0)


def test_count_correct_and_tpr_by_hand() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.3])
    included = np.array([True, False, True, False, False, True])
    # k = 2: top two (0.9 in, 0.8 out) -> 1 right; bottom two (0.1 out, 0.2 out) -> 2 right.
    assert count_correct(scores, included, 2) == 3
    # Descending: 0.9 in, 0.8 out, 0.5 in, 0.3 in, 0.2 out, 0.1 out. At FPR 0 only 0.9 is
    # above the threshold (TPR 1/3); one false positive (FPR 1/3) admits every member.
    assert tpr_at_fpr(scores, included, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(scores, included, 0.34) == pytest.approx(1.0)
    assert tpr_at_fpr(scores, included, 0.3) == pytest.approx(1 / 3)


def test_guess_grid_is_fixed_by_the_canary_count() -> None:
    assert guess_counts(200) == (2, 5, 10, 20, 50, 100)
    assert guess_counts(20) == (1, 2, 5, 10)
    # 100 canaries (docs/privacy.md): 2, 4, 10, 20, 50, 100 guesses; 5% would be 5 guesses,
    # which cannot split evenly into "in" and "out", and k = round(2.5) is 2
    assert guess_counts(100) == (1, 2, 5, 10, 25, 50)


def test_audit_scores_splits_the_confidence_over_the_grid() -> None:
    rng = np.random.default_rng(0)
    included = rng.random(400) < 0.5
    scores = included + rng.normal(0, 0.6, 400)
    audit = audit_scores(scores, included, delta=1e-5, confidence=0.95)
    ks = guess_counts(400)
    assert [g[0] for g in audit.grid] == [2 * k for k in ks]
    per_test = 1 - 0.05 / len(ks)
    for r, v, eps in audit.grid:
        assert v == count_correct(scores, included, r // 2)
        assert eps == epsilon_lower_bound(400, r, v, 1e-5, per_test)
    assert audit.epsilon_lower_bound == max(g[2] for g in audit.grid) > 0
    assert 0.75 < audit.auc < 0.95 and audit.included == int(included.sum())


def test_a_mechanism_that_overclaims_its_epsilon_is_caught() -> None:
    """The adversary: randomized response with true epsilon 3 whose accountant claims 1."""
    rng = np.random.default_rng(1)
    caught = 0
    for _ in range(5):
        coins = rng.random(1000) < 0.5
        truthful = rng.random(1000) < math.exp(3) / (1 + math.exp(3))
        output = np.where(truthful, coins, ~coins).astype(float)
        audit = audit_scores(output + 1e-3 * rng.random(1000), coins, delta=1e-5)
        caught += audit.epsilon_lower_bound > 1.0
    assert caught == 5


def test_the_bound_stays_below_the_true_epsilon_of_randomized_response() -> None:
    """Validity: an honest epsilon-DP mechanism, many audits, the bound exceeds epsilon rarely."""
    rng = np.random.default_rng(2)
    eps = 2.0
    bounds = []
    for _ in range(40):
        coins = rng.random(500) < 0.5
        truthful = rng.random(500) < math.exp(eps) / (1 + math.exp(eps))
        output = np.where(truthful, coins, ~coins).astype(float) + 1e-3 * rng.random(500)
        bounds.append(audit_scores(output, coins, delta=0.0, confidence=0.95).epsilon_lower_bound)
    assert sum(b > eps for b in bounds) <= 2  # expected <= 5 % of 40
    assert np.median(bounds) > 1.0  # and the audit is not vacuous
