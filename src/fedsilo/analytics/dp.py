"""Central differential privacy for query answers: calibration, noise, cost.

Each of the plan's ``m`` statistic blocks has a per-row sensitivity ``Δ_j`` (see
:mod:`fedsilo.analytics.plan`); dividing block ``j`` by ``Δ_j`` gives a vector in which one row
moves at most ``sqrt(m)`` in L2 norm and ``m`` in L1 norm (GROUP BY groups are disjoint: a row
touches one group only). Hence:

* **Gaussian**: every statistic of block ``j`` gets ``N(0, (z sqrt(m) Δ_j)^2)`` with noise
  multiplier ``z``; that is the Gaussian mechanism with L2 sensitivity 1 and noise ``z``, whose
  (epsilon, delta) comes from :func:`fedsilo.privacy.accounting.epsilon`
  (``GaussianSpend(z, sample_rate=1, steps=1)``). Given a target epsilon instead, ``z`` is
  :func:`~fedsilo.privacy.accounting.noise_for_epsilon`.
* **Laplace**: ``Laplace(m Δ_j / epsilon)``: pure epsilon-DP (delta 0); queries compose by
  basic composition (epsilons add).

The noise is drawn once per released statistic; everything after it (AVG = noisy sum / noisy
count, ...) is post-processing and costs nothing. Threat model: the released answer is DP
against its readers; the coordinator adds the noise, so it is trusted with the exact sums
(and, unless ``[privacy.secure_aggregation]`` is on, with each party's own statistics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedsilo.analytics.config import Mechanism, PrivacySettings
from fedsilo.analytics.plan import QueryPlan
from fedsilo.privacy.accounting import GaussianSpend, epsilon, noise_for_epsilon
from fedsilo.privacy.noise import NoiseSource


@dataclass(frozen=True)
class NoisePlan:
    """Per-statistic noise scale and the query's privacy cost."""

    mechanism: Mechanism
    scales: np.ndarray  # (statistics,): Gaussian sigma or Laplace b
    epsilon: float
    delta: float
    noise_multiplier: float | None = None

    @property
    def sd(self) -> np.ndarray:
        """Standard deviation of each statistic's noise."""
        if self.mechanism is Mechanism.LAPLACE:
            return self.scales * math.sqrt(2.0)
        return self.scales

    def sample(self, source: NoiseSource, shape: tuple[int, ...]) -> np.ndarray:
        """Noise of ``shape`` (..., statistics), from ``source`` (a CSPRNG in production)."""
        if self.mechanism is Mechanism.GAUSSIAN:
            return np.asarray(source.normal(1.0, shape) * self.scales)
        if self.mechanism is Mechanism.LAPLACE:
            return np.asarray(source.laplace(1.0, shape) * self.scales)
        return np.zeros(shape)


def block_sensitivities(plan: QueryPlan) -> np.ndarray:
    """Per statistic (in plan order), the sensitivity of the block it belongs to."""
    return np.concatenate(
        [np.full(b.size, b.sensitivity(plan.columns)) for b in plan.blocks]
    ).astype(np.float64)


def calibrate(plan: QueryPlan, privacy: PrivacySettings) -> NoisePlan:
    sens = block_sensitivities(plan)
    m = len(plan.blocks)
    if privacy.mechanism is Mechanism.NONE:
        return NoisePlan(Mechanism.NONE, np.zeros_like(sens), 0.0, 0.0)
    if privacy.mechanism is Mechanism.LAPLACE:
        assert privacy.epsilon is not None
        return NoisePlan(Mechanism.LAPLACE, sens * m / privacy.epsilon, privacy.epsilon, 0.0)
    z = privacy.noise_multiplier
    if z is None:
        assert privacy.epsilon is not None
        z = noise_for_epsilon(privacy.epsilon, privacy.delta, 1.0, 1, privacy.accounting)
    eps = epsilon(GaussianSpend(z, 1.0, 1), privacy.delta, privacy.accounting)
    return NoisePlan(Mechanism.GAUSSIAN, sens * z * math.sqrt(m), eps, privacy.delta, z)
