"""Membership inference on canaries, and the one-run epsilon lower bound.

Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023).
``m`` canaries are each included in training by an independent fair coin ``S_i``. After one
training run the auditor scores every canary (higher: more likely trained on), guesses "in"
for the ``k`` highest scores and "out" for the ``k`` lowest and abstains on the rest: ``r = 2k``
guesses, ``v`` of them correct. If training is (epsilon, delta)-DP with respect to each
canary, their main theorem (Sec. 3; the p-value computation of their appendix) bounds::

    P[V >= v] <= beta + 2 m delta alpha,   q = e^eps / (1 + e^eps)
    beta  = P[Binomial(r, q) >= v]
    alpha = max_{1 <= i <= v} (P[Binomial(r, q) >= v - i] - beta) / i

so an outcome whose bound is below ``1 - confidence`` rejects (epsilon, delta)-DP, and every
smaller epsilon with it. :func:`epsilon_lower_bound` is the largest epsilon it rejects (found
by bisection, keeping the invariant that the returned value is rejected). Choosing ``k`` after
seeing the scores would overstate the bound, so :func:`audit_scores` tries a fixed grid of
guess counts and splits the confidence over them (Bonferroni): the reported bound holds at the
stated confidence whatever ``k`` won.

Threat model: none; this is the auditor's arithmetic. The result is a *lower* bound on the
epsilon of the mechanism as run: a correct DP implementation never lets it exceed the
accountant's epsilon except with probability ``1 - confidence``.

>>> round(epsilon_lower_bound(m=100, guesses=10, correct=10, delta=0.0, confidence=0.95), 4)
1.0519
>>> epsilon_lower_bound(m=100, guesses=10, correct=5, delta=0.0, confidence=0.95)
0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve

from fedsilo.errors import ConfigError

#: Guesses as fractions of the canaries, fixed before any score is seen; the confidence is
#: split evenly over them. Half of a grid point's guesses are "in", half "out", so each is
#: ``k = round(fraction * m / 2)`` per direction and ``2 k`` guesses in all (an even count).
GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

_BISECTION_STEPS = 60


def _check_counts(m: int, guesses: int, correct: int) -> None:
    if not 0 <= correct <= guesses <= m:
        raise ConfigError(
            f"one-run audit counts must satisfy 0 <= correct <= guesses <= canaries, got "
            f"correct={correct}, guesses={guesses}, canaries={m}"
        )


def one_run_p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """Probability of ``correct`` or more right guesses out of ``guesses`` under (eps, delta)-DP.

    ``m`` is the number of canaries (each included by a fair coin), ``guesses`` the number of
    non-abstaining guesses. Steinke et al. 2023, main theorem (see the module docstring).
    """
    _check_counts(m, guesses, correct)
    if not (epsilon >= 0 and 0 <= delta <= 1):
        raise ConfigError(f"need epsilon >= 0 and delta in [0, 1], got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of epsilon-DP randomized response
    beta = float(stats.binom.sf(correct - 1, guesses, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if delta > 0 and correct > 0:
        i = np.arange(1, correct + 1)
        gap = stats.binom.sf(correct - i - 1, guesses, q) - beta  # P[v - i <= B < v]
        alpha = float(np.max(gap / i))
    return min(1.0, beta + 2.0 * m * delta * alpha)


def epsilon_lower_bound(
    m: int, guesses: int, correct: int, delta: float, confidence: float
) -> float:
    """The largest epsilon whose (epsilon, delta)-DP this outcome rejects (0 if none).

    With probability at least ``confidence`` over the coins and the training run, the
    mechanism is *not* (e, delta)-DP for any ``e`` below the returned value.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    significance = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return one_run_p_value(m, guesses, correct, eps, delta) < significance

    if not rejected(0.0):
        return 0.0
    low, high = 0.0, 1.0
    while rejected(high):
        low, high = high, 2 * high
        if high > 1e3:  # only reachable with absurd counts; no mechanism leaks this much
            return low
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        if rejected(mid):
            low = mid
        else:
            high = mid
    return low


def guess_counts(m: int, fractions: Sequence[float] = GUESS_FRACTIONS) -> tuple[int, ...]:
    """Guesses per direction tried by :func:`audit_scores`: distinct ``k`` in 1..m // 2.

    ``k = round(fraction * m / 2)`` (halves to even), so 5% of 100 canaries is ``k = 2``:

    >>> guess_counts(100)
    (1, 2, 5, 10, 25, 50)
    """
    if m < 2:
        raise ConfigError(f"the one-run audit needs at least 2 canaries, got {m}")
    return tuple(sorted({min(m // 2, max(1, round(f * m / 2))) for f in fractions}))


def count_correct(scores: np.ndarray, included: np.ndarray, k: int) -> int:
    """Right guesses when the ``k`` highest scores are guessed in and the ``k`` lowest out.

    Ties are broken by canary index, which the coins do not influence.
    """
    order = np.lexsort((np.arange(len(scores)), scores))  # ascending score, then index
    low, high = order[:k], order[len(order) - k :]
    return int(np.sum(included[high]) + np.sum(~included[low]))


def tpr_at_fpr(scores: np.ndarray, included: np.ndarray, fpr: float) -> float:
    """Largest true-positive rate of a score threshold whose false-positive rate is <= ``fpr``."""
    fprs, tprs, _ = roc_curve(included, scores)
    return float(np.max(tprs[fprs <= fpr]))


@dataclass(frozen=True)
class OneRunAudit:
    """What the membership test on one run's canaries shows."""

    canaries: int
    included: int
    auc: float
    low_fpr: float
    tpr_at_low_fpr: float
    delta: float
    confidence: float
    epsilon_lower_bound: float
    guesses: int  # r of the grid point that gave the bound (2 k)
    correct: int  # v at that point
    grid: tuple[tuple[int, int, float], ...]  # (guesses, correct, bound) for every k tried

    def to_json(self) -> dict[str, Any]:
        return {
            "canaries": self.canaries,
            "included": self.included,
            "auc": self.auc,
            "low_fpr": self.low_fpr,
            "tpr_at_low_fpr": self.tpr_at_low_fpr,
            "delta": self.delta,
            "confidence": self.confidence,
            "epsilon_lower_bound": self.epsilon_lower_bound,
            "guesses": self.guesses,
            "correct": self.correct,
            "grid": [{"guesses": r, "correct": v, "epsilon": e} for r, v, e in self.grid],
        }


def audit_scores(
    scores: Sequence[float] | np.ndarray,
    included: Sequence[bool] | np.ndarray,
    *,
    delta: float,
    confidence: float = 0.95,
    low_fpr: float = 0.01,
    fractions: Sequence[float] = GUESS_FRACTIONS,
) -> OneRunAudit:
    """AUC, TPR at ``low_fpr`` and the one-run epsilon lower bound for canary scores.

    ``included[i]`` is canary ``i``'s secret coin. The bound is the best over the fixed grid
    of guess counts, each tested at ``(1 - confidence) / len(grid)`` (Bonferroni), so it holds
    at ``confidence`` overall.
    """
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included, dtype=bool)
    if s.shape != inc.shape or s.ndim != 1:
        raise ConfigError(f"scores {s.shape} and coins {inc.shape} must be equal-length vectors")
    if not np.all(np.isfinite(s)):
        raise ConfigError("canary scores must be finite numbers")
    m = len(s)
    n_in = int(inc.sum())
    if n_in == 0 or n_in == m:
        raise ConfigError(
            f"all {m} canaries fell on one side of the coin ({n_in} included); use more canaries"
        )
    ks = guess_counts(m, fractions)
    per_test = 1.0 - (1.0 - confidence) / len(ks)
    grid = []
    for k in ks:
        v = count_correct(s, inc, k)
        grid.append((2 * k, v, epsilon_lower_bound(m, 2 * k, v, delta, per_test)))
    best = max(grid, key=lambda g: g[2])
    return OneRunAudit(
        canaries=m,
        included=n_in,
        auc=float(roc_auc_score(inc, s)),
        low_fpr=low_fpr,
        tpr_at_low_fpr=tpr_at_fpr(s, inc, low_fpr),
        delta=delta,
        confidence=confidence,
        epsilon_lower_bound=best[2],
        guesses=best[0],
        correct=best[1],
        grid=tuple(grid),
    )
